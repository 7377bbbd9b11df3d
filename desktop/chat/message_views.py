"""What the chat view shows for each message of the visible thread: a small value per message, built
from core's Conversation (text, thinking, tool calls, branch position, the answer's statistics line)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.chat.attachments.attachment import Attachment, Source
from core.chat.conversation import Conversation, Message, MessageStats, ToolCall
from core.platform.units import count_of

THINKING_NOW = "Thinking…"


@dataclass(frozen=True)
class MessageView:
    id: str
    role: str                  # "user" | "assistant" | "system"
    text: str                  # the answer only: Copy copies this, never the thinking
    footnote: str = ""         # the answer's statistics, "Stopped", "Interrupted"
    branch: tuple[int, int] = (1, 1)   # (position, count) among edits / regenerations
    streaming: bool = False
    reasoning: str = ""        # the model's thinking, shown in a block of its own above the answer
    thinking_note: str = ""    # that block's title: "Thinking…" while it thinks, then "Thought for 12 s"
    tool_calls: tuple[ToolCall, ...] = ()
    attachments: tuple[Attachment, ...] = ()   # a question's files, listed under it
    sources: tuple[Source, ...] = ()   # an answer's sources: the document parts its question sent, each openable

    @property
    def has_branches(self) -> bool:
        return self.branch[1] > 1

    @property
    def still_thinking(self) -> bool:
        """Streaming, and nothing but thinking has arrived yet: its thinking block is open unless closed by hand."""
        return self.streaming and bool(self.reasoning) and not self.text and not self.tool_calls


def thread_views(conversation: Conversation, streaming_id: str | None = None,
                 thinking_seconds: float | None = None) -> list[MessageView]:
    return [message_view(conversation, m, streaming=m.id == streaming_id,
                         thinking_seconds=thinking_seconds if m.id == streaming_id else None)
            for m in conversation.messages]


def message_view(conversation: Conversation, message: Message, *, streaming: bool = False,
                 thinking_seconds: float | None = None) -> MessageView:
    """`thinking_seconds`: how long a streaming answer thought (measured live, before its stats arrive)."""
    view = MessageView(message.id, message.role, message.content, "" if streaming else footnote(message),
                       conversation.branch_position(message), streaming, message.reasoning,
                       tool_calls=message.tool_calls, attachments=message.attachments,
                       sources=answer_sources(conversation, message))
    return dataclasses.replace(view, thinking_note=thinking_note(view, message.stats, thinking_seconds))


def answer_sources(conversation: Conversation, message: Message) -> tuple[Source, ...]:
    """The parts of documents an answer was given: its question's sources."""
    if message.role != "assistant" or message.parent_id is None:
        return ()
    return conversation.message(message.parent_id).sources


def thinking_note(view: MessageView, stats: MessageStats | None, live_seconds: float | None) -> str:
    if not view.reasoning:
        return ""
    if view.still_thinking:
        return THINKING_NOW
    seconds = stats.reasoning_seconds if stats and stats.reasoning_seconds else live_seconds
    if seconds is None:
        return "Thinking (cut off)" if not view.streaming else "Thought"
    return thought_for(seconds)


def thought_for(seconds: float) -> str:
    if seconds < 1:
        return "Thought for a moment"
    if seconds < 60:
        return f"Thought for {seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"Thought for {minutes} min {rest} s"


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
    tokens = (f"{stats.reasoning_tokens} thinking + {stats.answer_tokens} answer tokens" if stats.reasoning_tokens
              else count_of(stats.completion_tokens, "token"))
    # One token has no rate to measure: the engine reports 0, which would read as a stalled answer.
    speed = [f"{stats.tokens_per_second:.1f} tok/s"] if stats.tokens_per_second > 0 else []
    return [tokens, *speed, f"first token {stats.ttft_seconds * 1000:.0f} ms"]


def last_context_use(conversation: Conversation) -> tuple[int, int] | None:
    """(context used, context size) after the newest answer of the visible thread that has stats."""
    stats = _newest_stats(conversation)
    return (stats.context_used, stats.context_size) if stats else None


def earlier_thinking_saved(conversation: Conversation) -> int:
    """Tokens of earlier thinking the template did not send again with the newest answer's prompt."""
    stats = _newest_stats(conversation)
    return stats.earlier_reasoning_left_out if stats else 0


def _newest_stats(conversation: Conversation) -> MessageStats | None:
    for message in reversed(conversation.messages):
        if message.stats and message.stats.context_size:
            return message.stats
    return None
