"""A conversation: its settings and its messages, kept as a tree so no earlier branch is ever lost.

Every message names its parent. Editing a question or regenerating an answer adds a *sibling* instead of
overwriting, and the conversation remembers which leaf is selected: the visible thread is the path from
the root to that leaf (`messages`, `path_to`), and `siblings` / `branch_position` drive "< 2/3 >" switching.

Messages are frozen values: changing one (e.g. finishing a streamed answer) replaces it in the tree, so a
`Message` held elsewhere is a snapshot. Persistence lives in `core.chat.store`; this module never touches disk.

An answer keeps its thinking (`reasoning`) and the tools it called (`tool_calls`) apart from its text: the
engine splits them out of the model's output, and they go back to the engine with the earlier turns as
"reasoning_content" and "tool_calls" (the engine shows them to the model where its template reads them).
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from core.chat.attachments.attachment import Attachment, Source, text_for_model

ROLES = ("system", "user", "assistant")
TITLE_LIMIT = 60
EFFORTS = ("low", "medium", "high")      # the thinking efforts a template may read (gpt-oss's reasoning_effort)


class ChatError(ValueError):
    """A chat operation that does not make sense (unknown message, bad setting); the text says why."""


def new_id() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------------------------
# sampling settings and presets


# The range of each sampling value: the checks below and the chat settings' controls read them here.
SAMPLING_LIMITS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 5.0), "top_p": (0.0, 1.0), "min_p": (0.0, 1.0), "repeat_penalty": (0.5, 3.0),
    "top_k": (0, 100_000), "max_tokens": (1, 1 << 20),
}


@dataclass(frozen=True)
class SamplingValues:
    """How the model picks tokens. Field names match core.engine.protocol.SamplingSettings."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 1024
    seed: int | None = None          # None: a different answer each time

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "min_p", "repeat_penalty"):
            _check_range(name, getattr(self, name), *SAMPLING_LIMITS[name])
        for name in ("top_k", "max_tokens"):
            _check_whole(name, getattr(self, name), *SAMPLING_LIMITS[name])
        if self.seed is not None:
            _check_whole("seed", self.seed, 0)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "SamplingValues":
        """Unknown keys are an error; missing keys take the defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ChatError(f"Unknown sampling setting(s): {', '.join(map(str, unknown))}.")
        return cls(**dict(values))


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ChatError(f"The sampling setting {name} must be a number, not {value!r}.")
    if not low <= value <= high:
        raise ChatError(f"The sampling setting {name} must be between {low:g} and {high:g}, not {value:g}.")


def _check_whole(name: str, value: object, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChatError(f"The sampling setting {name} must be a whole number, not {value!r}.")
    if value < low:
        raise ChatError(f"The sampling setting {name} must be at least {low:g}, not {value}.")
    if high is not None and value > high:
        raise ChatError(f"The sampling setting {name} must be at most {high:g}, not {value}.")


PRESETS: dict[str, SamplingValues] = {
    "Precise": SamplingValues(temperature=0.2, top_p=0.9, top_k=40, min_p=0.05, repeat_penalty=1.1),
    "Balanced": SamplingValues(),
    "Creative": SamplingValues(temperature=1.0, top_p=0.98, top_k=100, min_p=0.02, repeat_penalty=1.05),
}
DEFAULT_PRESET = "Balanced"
CUSTOM_PRESET = "Custom"


def preset_name(values: SamplingValues) -> str:
    """The preset these values are (ignoring max_tokens and seed), or "Custom"."""
    for name, preset in PRESETS.items():
        if dataclasses.replace(values, max_tokens=preset.max_tokens, seed=preset.seed) == preset:
            return name
    return CUSTOM_PRESET


# --------------------------------------------------------------------------------------------
# thinking


@dataclass(frozen=True)
class ThinkingSetting:
    """A conversation's choice about the model's thinking; None leaves it to the model's template. The engine
    applies only what the loaded model's template lets a user choose."""

    enabled: bool | None = None
    effort: str | None = None        # one of EFFORTS

    def __post_init__(self) -> None:
        if self.enabled is not None and not isinstance(self.enabled, bool):
            raise ChatError(f"Thinking must be switched on (true), off (false) or left to the model (null), "
                            f"not {self.enabled!r}.")
        if self.effort is not None and self.effort not in EFFORTS:
            raise ChatError(f"The thinking effort must be one of {', '.join(EFFORTS)}, not {self.effort!r}.")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "ThinkingSetting":
        unknown = sorted(set(values) - {"enabled", "effort"})
        if unknown:
            raise ChatError(f"Unknown thinking setting(s): {', '.join(map(str, unknown))}.")
        return cls(**dict(values))


# --------------------------------------------------------------------------------------------
# messages


@dataclass(frozen=True)
class MessageStats:
    """How an answer was produced. Built from the engine's AnswerStats with `from_engine`."""

    ttft_seconds: float = 0.0
    tokens_per_second: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: str = "stop"        # "stop" | "length" | "cancelled" | "crashed"
    context_used: int = 0
    context_size: int = 0
    reasoning_tokens: int = 0        # of completion_tokens, those spent thinking
    reasoning_seconds: float = 0.0
    earlier_reasoning_left_out: int = 0  # tokens of earlier answers' thinking the template did not send again

    @property
    def answer_tokens(self) -> int:
        return max(self.completion_tokens - self.reasoning_tokens, 0)

    @classmethod
    def from_engine(cls, stats: object) -> "MessageStats":
        """Copies the matching fields of core.engine.protocol.AnswerStats (or any look-alike)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(stats, name) for name in names if hasattr(stats, name)})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "MessageStats":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ChatError(f"Unknown answer statistic(s): {', '.join(map(str, unknown))}.")
        for name, value in values.items():
            expected = str if name == "stop_reason" else (int, float)
            if isinstance(value, bool) or not isinstance(value, expected):
                raise ChatError(f"The answer statistic {name} has the wrong type ({value!r}).")
        return cls(**dict(values))


@dataclass(frozen=True)
class ToolCall:
    """A tool the model called in an answer. Field names match core.engine.protocol.ToolCall."""

    id: str
    name: str
    arguments: str                   # JSON text, as the model wrote it

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "ToolCall":
        if set(values) != {"id", "name", "arguments"}:
            raise ChatError("A tool call must have exactly the fields id, name and arguments, not "
                            f"{', '.join(sorted(map(str, values))) or 'none'}.")
        for name, value in values.items():
            if not isinstance(value, str):
                raise ChatError(f"A tool call's {name} must be text, not {value!r}.")
        return cls(**dict(values))

    @classmethod
    def from_engine(cls, call: object) -> "ToolCall":
        """Copies core.engine.protocol.ToolCall (or any look-alike)."""
        return cls(call.id, call.name, call.arguments)

    def as_engine_message(self) -> dict:
        """The OpenAI shape chat templates read in an assistant turn's "tool_calls"."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    stopped_early: bool = False      # the user pressed Stop, the engine crashed, or the app died mid-answer
    id: str = field(default_factory=new_id)
    parent_id: str | None = None
    created_at: float = field(default_factory=time.time)
    stats: MessageStats | None = None  # answers only, once finished
    reasoning: str = ""              # answers only: the model's thinking, never part of `content`
    tool_calls: tuple[ToolCall, ...] = ()
    attachments: tuple[Attachment, ...] = ()   # a user's message: the files attached to it
    sources: tuple[Source, ...] = ()   # a user's message: the parts of its documents the model read with it

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ChatError(f"A chat message's role must be one of {', '.join(ROLES)}, not {self.role!r}.")


def suggest_title(text: str, limit: int = TITLE_LIMIT) -> str:
    """A conversation title from its first question: the first line, cut at a word near `limit`."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = re.sub(r"\s+", " ", line).strip()
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0] or line[:limit]
    return cut.rstrip(" ,.;:") + "…"


# --------------------------------------------------------------------------------------------
# what the engine sees


def context_messages(system_prompt: str, thread: Iterable[Message]) -> list[dict]:
    """The context-window policy: the system prompt (if any), then every turn of the visible thread that
    has text or tool calls; an answer carries its thinking as "reasoning_content" and its calls as
    "tool_calls" (the engine leaves them out where the template does not read them). Other branches never
    reach the model. Fitting into the model's context (dropping the oldest turns) is the engine's job, since
    only it can count tokens."""
    turns = [_engine_turn(m) for m in thread if m.content or m.tool_calls or m.attachments]
    if system_prompt.strip():
        return [{"role": "system", "content": system_prompt.strip()}, *turns]
    return turns


def _engine_turn(message: Message) -> dict:
    turn: dict = {"role": message.role, "content": text_for_model(message.content, message.sources)}
    images = [attachment.path for attachment in message.attachments if attachment.kind == "image" and attachment.path]
    if images:
        turn["images"] = images
    if message.reasoning:
        turn["reasoning_content"] = message.reasoning
    if message.tool_calls:
        turn["tool_calls"] = [call.as_engine_message() for call in message.tool_calls]
    return turn


def reasoning_left_out(earlier: Iterable[Message], rendered_prompt: str) -> int:
    """Tokens of earlier answers' thinking that the chat template did not put into `rendered_prompt` (most
    reasoning templates drop old thoughts): counted only for answers whose text the prompt does hold, so turns
    the engine dropped to fit the context are not counted as a saving."""
    saved = 0
    for message in earlier:
        if message.role != "assistant" or not message.reasoning.strip() or not message.stats:
            continue
        if message.content.strip() in rendered_prompt and message.reasoning.strip() not in rendered_prompt:
            saved += message.stats.reasoning_tokens
    return saved


# --------------------------------------------------------------------------------------------
# the conversation

_AFTER_SELECTED = object()  # add(): "the parent is the selected leaf"


@dataclass
class Conversation:
    system_prompt: str = ""
    title: str = ""
    id: str = field(default_factory=new_id)
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0          # 0: same as created_at
    preset: str = DEFAULT_PRESET
    sampling: SamplingValues = field(default_factory=lambda: PRESETS[DEFAULT_PRESET])
    current_leaf_id: str | None = None
    thinking: ThinkingSetting = ThinkingSetting()
    _nodes: dict[str, Message] = field(default_factory=dict, init=False, repr=False)
    _children: dict[str | None, list[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at

    @classmethod
    def restore(cls, messages: Iterable[Message], **header) -> "Conversation":
        """Rebuild a conversation from stored messages, parents before children."""
        conversation = cls(**header)
        leaf = conversation.current_leaf_id
        for message in messages:
            conversation._attach(message)
        if leaf not in conversation._nodes:
            leaf = conversation._newest_leaf_under(None)
        conversation.current_leaf_id = leaf
        return conversation

    # --- reading the tree ---

    @property
    def messages(self) -> list[Message]:
        """The visible thread: root to the selected leaf."""
        return self.path_to(self.current_leaf_id)

    def all_messages(self) -> list[Message]:
        """Every message of every branch, parents before children."""
        return list(self._nodes.values())

    def message(self, message_id: str) -> Message:
        try:
            return self._nodes[message_id]
        except KeyError:
            raise ChatError(f"This conversation has no message {message_id!r}.") from None

    def children(self, message_id: str | None) -> list[Message]:
        """The replies to a message (None: the first messages), oldest first."""
        return [self._nodes[i] for i in self._children.get(message_id, [])]

    def path_to(self, leaf_id: str | None) -> list[Message]:
        path: list[Message] = []
        current = leaf_id
        while current is not None:
            message = self.message(current)
            path.append(message)
            current = message.parent_id
        return path[::-1]

    def siblings(self, message: Message | str) -> list[Message]:
        """The message and its alternatives (other edits / regenerations), oldest first."""
        return self.children(self.message(_id_of(message)).parent_id)

    def branch_position(self, message: Message | str) -> tuple[int, int]:
        """(1-based position, count) among its siblings, for a "< 2/3 >" switcher."""
        message_id = _id_of(message)
        ids = [m.id for m in self.siblings(message_id)]
        return ids.index(message_id) + 1, len(ids)

    # --- changing it ---

    def add(self, role: str, content: str, stopped_early: bool = False, *,
            parent_id: str | None | object = _AFTER_SELECTED, stats: MessageStats | None = None,
            message_id: str | None = None, reasoning: str = "", tool_calls: tuple[ToolCall, ...] = (),
            attachments: tuple[Attachment, ...] = (), sources: tuple[Source, ...] = ()) -> Message:
        """Add a message under `parent_id` (default: the selected leaf) and select it."""
        parent = self.current_leaf_id if parent_id is _AFTER_SELECTED else parent_id
        message = Message(role, content, stopped_early, id=message_id or new_id(), parent_id=parent,
                          stats=stats, reasoning=reasoning, tool_calls=tuple(tool_calls),
                          attachments=tuple(attachments), sources=tuple(sources))
        self._attach(message)
        self.current_leaf_id = message.id
        if role == "user" and not self.title:
            self.title = suggest_title(content)
        self.updated_at = max(self.updated_at, message.created_at)
        return message

    def edit(self, message_id: str, content: str) -> Message:
        """Edit-and-resend: a new sibling with the new text, selected; the original stays reachable."""
        original = self.message(message_id)
        return self.add(original.role, content, parent_id=original.parent_id)

    def update(self, message_id: str, *, content: str | None = None, stopped_early: bool | None = None,
               stats: MessageStats | None = None, reasoning: str | None = None,
               tool_calls: tuple[ToolCall, ...] | None = None) -> Message:
        """Replace a message's text / thinking / tool calls / flags / stats (e.g. as a streamed answer grows)."""
        old = self.message(message_id)
        changes = {"content": content, "stopped_early": stopped_early, "stats": stats, "reasoning": reasoning,
                   "tool_calls": None if tool_calls is None else tuple(tool_calls)}
        new = dataclasses.replace(old, **{k: v for k, v in changes.items() if v is not None})
        self._nodes[message_id] = new
        return new

    def select(self, message_id: str) -> Message:
        """Show the branch through this message: select its newest leaf and return that leaf."""
        self.message(message_id)
        self.current_leaf_id = self._newest_leaf_under(message_id)
        return self._nodes[self.current_leaf_id]

    # --- for the engine ---

    def engine_messages(self, leaf_id: str | None | object = _AFTER_SELECTED) -> list[dict]:
        """What the model sees: the system prompt (if any) then the turns with text of the visible thread,
        or of the thread ending at `leaf_id` (regenerate: the answer's parent)."""
        leaf = self.current_leaf_id if leaf_id is _AFTER_SELECTED else leaf_id
        return context_messages(self.system_prompt, self.path_to(leaf))

    # --- internals ---

    def _attach(self, message: Message) -> None:
        if message.id in self._nodes:
            raise ChatError(f"The message id {message.id!r} is used twice in one conversation.")
        if message.parent_id is not None and message.parent_id not in self._nodes:
            raise ChatError(f"The message {message.id!r} answers {message.parent_id!r}, which is not "
                            "earlier in this conversation.")
        self._nodes[message.id] = message
        self._children.setdefault(message.parent_id, []).append(message.id)

    def _newest_leaf_under(self, message_id: str | None) -> str | None:
        current = message_id
        while self._children.get(current):
            current = self._children[current][-1]
        return current


def _id_of(message: Message | str) -> str:
    return message if isinstance(message, str) else message.id
