"""A conversation: the system prompt and the turns, in the shape the engine takes."""
from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    stopped_early: bool = False  # the user pressed Stop or the engine crashed mid-answer

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"A chat message's role must be one of {', '.join(ROLES)}, not {self.role!r}.")


@dataclass
class Conversation:
    system_prompt: str = ""
    messages: list[Message] = field(default_factory=list)

    def add(self, role: str, content: str, *, stopped_early: bool = False) -> Message:
        message = Message(role, content, stopped_early)
        self.messages.append(message)
        return message

    def engine_messages(self) -> list[dict[str, str]]:
        """What the model sees: the system prompt (if any) then every turn with text in it."""
        turns = [{"role": m.role, "content": m.content} for m in self.messages if m.content]
        if self.system_prompt.strip():
            return [{"role": "system", "content": self.system_prompt.strip()}, *turns]
        return turns
