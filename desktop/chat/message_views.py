"""What the chat view shows for each message of the visible thread: a small value per message, built
from core's Conversation (text, branch position, the answer's statistics line)."""
from __future__ import annotations

from dataclasses import dataclass

from core.chat.conversation import Conversation, Message, MessageStats


@dataclass(frozen=True)
class MessageView:
    id: str
    role: str                  # "user" | "assistant" | "system"
    text: str
    footnote: str = ""         # the answer's statistics, "Stopped", "Interrupted"
    branch: tuple[int, int] = (1, 1)   # (position, count) among edits / regenerations
    streaming: bool = False

    @property
    def has_branches(self) -> bool:
        return self.branch[1] > 1


def thread_views(conversation: Conversation, streaming_id: str | None = None) -> list[MessageView]:
    return [message_view(conversation, m, streaming=m.id == streaming_id) for m in conversation.messages]


def message_view(conversation: Conversation, message: Message, *, streaming: bool = False) -> MessageView:
    return MessageView(message.id, message.role, message.content,
                       "" if streaming else footnote(message),
                       conversation.branch_position(message), streaming)


def footnote(message: Message) -> str:
    if message.role != "assistant":
        return ""
    stats = message.stats
    if stats is None:
        return "Interrupted · the text above is what arrived" if message.stopped_early else ""
    if stats.stop_reason == "crashed":
        return "Interrupted: the engine stopped · the text above is kept"
    parts = ["Stopped"] if stats.stop_reason == "cancelled" else []
    if stats.stop_reason == "length":
        parts.append("Length limit reached")
    return " · ".join(parts + _speed(stats))


def _speed(stats: MessageStats) -> list[str]:
    return [f"{stats.completion_tokens} tokens", f"{stats.tokens_per_second:.1f} tok/s",
            f"first token {stats.ttft_seconds * 1000:.0f} ms"]


def last_context_use(conversation: Conversation) -> tuple[int, int] | None:
    """(context used, context size) after the newest answer of the visible thread that has stats."""
    for message in reversed(conversation.messages):
        if message.stats and message.stats.context_size:
            return message.stats.context_used, message.stats.context_size
    return None
