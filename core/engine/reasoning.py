"""Splitting what a model writes into thinking, answer and tool calls, as the text streams in.

Models mark their thinking in one of a few ways (the "output family", read from the chat template and
the vocabulary, never from the file name):

  think          <think> ... </think> answer            (Qwen3, QwQ, DeepSeek-R1, SmolLM3, GLM ...)
  thinking       <thinking> ... </thinking> answer
  think-bracket  [THINK] ... [/THINK] answer            (Magistral, Ministral reasoning)
  harmony        <|channel|>analysis<|message|> ... <|end|><|start|>assistant<|channel|>final<|message|> ...
                 (gpt-oss; its special tokens are read here and never shown)
  none           everything is answer

A marker may arrive split over several tokens: text that could be the start of a marker is held until it
is known. A template may open the thinking block in the prompt itself (it ends with "<think>"): the output
then starts inside it. Tool-call blocks (tool_calls.py) are cut out of the answer and read into ToolCalls.
"""
from __future__ import annotations

import re
from typing import Sequence, Union

from core.engine.protocol import ReasoningText, ThinkingSupport, TokenText, ToolCall, ToolCallMade
from core.engine.tool_calls import (CallSyntax, answers_in_bare_json, call_syntaxes, make_call,
                                    read_bare_json_call)

NONE, THINK, THINKING, THINK_BRACKET, HARMONY = "none", "think", "thinking", "think-bracket", "harmony"
TAGS = {THINK: ("<think>", "</think>"), THINKING: ("<thinking>", "</thinking>"),
        THINK_BRACKET: ("[THINK]", "[/THINK]")}
HARMONY_TOKENS = ("<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>",
                  "<|call|>")
EFFORTS = ("low", "medium", "high")

SplitEvent = Union[TokenText, ReasoningText, ToolCallMade]


# ------------------------------------------------------------------------------------------ families


def output_family(template_text: str, token_texts: Sequence[str] = ()) -> str:
    """How this model marks its thinking, from its chat template and its special tokens."""
    tokens = set(token_texts)
    if "<|channel|>" in template_text or "<|channel|>" in tokens:
        return HARMONY
    if "[THINK]" in template_text or "[THINK]" in tokens:
        return THINK_BRACKET
    if "<think>" in template_text or "<think>" in tokens:
        return THINK
    if "<thinking>" in template_text or "<thinking>" in tokens:
        return THINKING
    return NONE


def thinking_support(template_text: str, token_texts: Sequence[str] = ()) -> ThinkingSupport:
    can_toggle = "enable_thinking" in template_text or bool(
        re.search(r"(?<![\w.'\"\[])thinking\s+is\s+defined|if\s+(?:not\s+)?thinking\b", template_text))
    efforts = EFFORTS if "reasoning_effort" in template_text else ()
    return ThinkingSupport(output_family(template_text, token_texts), can_toggle, efforts)


def splitter_for(template_text: str, prompt: str, *, token_texts: Sequence[str] = (),
                 tools_given: bool = False) -> "TagSplitter | HarmonySplitter":
    """The splitter for one answer to `prompt` (the rendered prompt tells whether thinking is already open)."""
    family = output_family(template_text, token_texts)
    if family == HARMONY:
        return HarmonySplitter()
    syntaxes = call_syntaxes(template_text)
    bare_json = tools_given and answers_in_bare_json(template_text)
    if family == NONE:
        return TagSplitter(None, None, syntaxes, bare_json=bare_json)
    opener, closer = TAGS[family]
    opened = prompt.rstrip().endswith(opener)
    return TagSplitter(opener, closer, syntaxes, starts_in_reasoning=opened, bare_json=bare_json)


# ------------------------------------------------------------------------------------------ scanning


class _Scanner:
    """Streamed text in; text before the first of some markers out, holding a tail that may begin one."""

    def __init__(self) -> None:
        self.pending = ""

    def next(self, markers: Sequence[str]) -> tuple[str, str | None]:
        """(text now safe to release, the marker that follows it, consumed) or (text, None)."""
        pending = self.pending
        if not pending:
            return "", None
        found: tuple[int, str] | None = None
        for marker in markers:
            index = pending.find(marker)
            if index >= 0 and (found is None or index < found[0]):
                found = (index, marker)
        if found is not None:
            index, marker = found
            self.pending = pending[index + len(marker):]
            return pending[:index], marker
        keep = _partial_marker_length(pending, markers)
        self.pending = pending[len(pending) - keep:] if keep else ""
        return pending[:len(pending) - keep], None

    def rest(self) -> str:
        pending, self.pending = self.pending, ""
        return pending


def _partial_marker_length(text: str, markers: Sequence[str]) -> int:
    """Length of the longest end of text that is the beginning of some marker."""
    longest = 0
    for marker in markers:
        if marker[0] not in text[-len(marker):]:
            continue
        for length in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:length]):
                longest = length
                break
    return longest


class _Collected:
    """What one answer has produced so far, as text and calls."""

    def __init__(self) -> None:
        self.reasoning: list[str] = []
        self.answer: list[str] = []
        self.calls: list[ToolCall] = []

    def reasoning_text(self, text: str, events: list) -> None:
        if text:
            self.reasoning.append(text)
            events.append(ReasoningText(text))

    def answer_text(self, text: str, events: list) -> None:
        if text:
            self.answer.append(text)
            events.append(TokenText(text))

    def call(self, call: ToolCall, events: list) -> None:
        self.calls.append(call)
        events.append(ToolCallMade(call))


class _SplitterResults:
    collected: _Collected

    @property
    def reasoning(self) -> str:
        return "".join(self.collected.reasoning)

    @property
    def answer(self) -> str:
        return "".join(self.collected.answer)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(self.collected.calls)


# ------------------------------------------------------------------------------------------ tag families

_ANSWER, _REASONING, _CALL, _BARE_JSON = "answer", "reasoning", "call", "bare-json"


class TagSplitter(_SplitterResults):
    """<think>-style families and models without thinking; tool-call blocks in the answer."""

    def __init__(self, opener: str | None, closer: str | None, syntaxes: Sequence[CallSyntax] = (), *,
                 starts_in_reasoning: bool = False, bare_json: bool = False) -> None:
        self.opener, self.closer = opener, closer
        self.syntaxes = tuple(syntaxes)
        self.bare_json = bare_json
        self.collected = _Collected()
        self.special_texts = frozenset(t for t in (opener, closer) if t) | frozenset(
            text for syntax in self.syntaxes for text in syntax.special_texts)
        self._scanner = _Scanner()
        self._state = _REASONING if starts_in_reasoning else _ANSWER
        self._answer_started = False          # after answer text, an opening tag is only text
        self._trim_leading = starts_in_reasoning
        self._held_space = ""                 # trailing whitespace of reasoning, dropped at its end
        self._syntax: CallSyntax | None = None
        self._block: list[str] = []
        self._call_openers = {syntax.opener: syntax for syntax in self.syntaxes}
        self._answer_markers = tuple(self._call_openers)
        self._fresh_markers = ((opener,) if opener else ()) + self._answer_markers

    @property
    def in_reasoning(self) -> bool:
        return self._state == _REASONING

    def feed(self, text: str) -> list[SplitEvent]:
        events: list[SplitEvent] = []
        if self._state == _BARE_JSON:
            self._block.append(text)
            return events
        self._scanner.pending += text
        while True:
            before, marker = self._scanner.next(self._markers())
            self._take(before, events)
            if marker is None:
                return events
            self._switch(marker, events)

    def finish(self) -> list[SplitEvent]:
        events: list[SplitEvent] = []
        self._take(self._scanner.rest(), events)
        if self._state in (_CALL, _BARE_JSON):
            self._end_block(events, closed=False)
        return events

    def _markers(self) -> tuple[str, ...]:
        if self._state == _REASONING:
            return (self.closer,)
        if self._state == _CALL:
            return (self._syntax.closer,) if self._syntax.closer else ()
        return self._answer_markers if self._answer_started else self._fresh_markers

    def _take(self, text: str, events: list) -> None:
        if not text:
            return
        if self._state == _REASONING:
            self._take_reasoning(text, events)
        elif self._state in (_CALL, _BARE_JSON):
            self._block.append(text)
        else:
            self._take_answer(text, events)

    def _take_reasoning(self, text: str, events: list) -> None:
        text = self._held_space + text
        if self._trim_leading:
            text = text.lstrip()
            self._trim_leading = not text
        body = text.rstrip()
        self._held_space = text[len(body):]
        self.collected.reasoning_text(body, events)

    def _take_answer(self, text: str, events: list) -> None:
        if not self._answer_started:
            if self._trim_leading:
                text = text.lstrip()
            if not text.strip():
                self._held_space += text      # whitespace before the answer waits to see what follows
                return
            text, self._held_space = self._held_space + text, ""
            self._answer_started = True
            if self.bare_json and text.lstrip().startswith("{"):
                self._state = _BARE_JSON
                self._block = [text]
                return
        self.collected.answer_text(text, events)

    def _switch(self, marker: str, events: list) -> None:
        if self._state == _REASONING:
            self._state, self._held_space, self._trim_leading = _ANSWER, "", True
        elif self._state == _CALL:
            self._end_block(events, closed=True)
        elif marker == self.opener:
            if self._answer_started:          # found in the same piece as the answer's first words
                self.collected.answer_text(marker, events)
            else:
                self._state, self._held_space, self._trim_leading = _REASONING, "", True
        else:
            self._state, self._syntax, self._block = _CALL, self._call_openers[marker], []

    def _end_block(self, events: list, *, closed: bool) -> None:
        body = "".join(self._block)
        state, syntax = self._state, self._syntax
        self._state, self._block, self._syntax, self._trim_leading = _ANSWER, [], None, True
        try:
            calls = read_bare_json_call(body) if state == _BARE_JSON else syntax.read(body)
        except ValueError:
            calls = None
        if calls:
            for call in calls:
                self.collected.call(call, events)
            return
        if state == _BARE_JSON:               # an ordinary answer that happens to start with "{"
            self.collected.answer_text(body, events)
        else:
            self._answer_started = True
            closing = syntax.closer if closed and syntax.closer else ""
            self.collected.answer_text(syntax.opener + body + closing, events)


# ------------------------------------------------------------------------------------------ harmony

_HEADER, _BODY = "header", "body"
_BODY_ENDS = ("<|end|>", "<|return|>", "<|call|>", "<|start|>", "<|channel|>")
_CHANNEL = re.compile(r"<\|channel\|>\s*([\w-]+)")
_RECIPIENT = re.compile(r"to=([^\s<]+)")
_ANY_TOKEN = re.compile(r"<\|[a-z_]+\|>")


class HarmonySplitter(_SplitterResults):
    """gpt-oss: messages of a header (`<|channel|>NAME [to=RECIPIENT]`) and a body, read channel by channel."""

    special_texts = frozenset(HARMONY_TOKENS)

    def __init__(self) -> None:
        self.collected = _Collected()
        self._scanner = _Scanner()
        self._state = _HEADER
        self._header: list[str] = []
        self._channel = ""
        self._recipient = ""
        self._call_body: list[str] = []
        self._trim_leading = True

    @property
    def in_reasoning(self) -> bool:
        return self._state == _BODY and self._channel == "analysis"

    def feed(self, text: str) -> list[SplitEvent]:
        events: list[SplitEvent] = []
        self._scanner.pending += text
        while True:
            markers = ("<|message|>",) if self._state == _HEADER else _BODY_ENDS
            before, marker = self._scanner.next(markers)
            self._take(before, events)
            if marker is None:
                return events
            if self._state == _HEADER:
                self._open_body()
            else:
                self._close_body(events)
                self._header = ["<|channel|>"] if marker == "<|channel|>" else []

    def finish(self) -> list[SplitEvent]:
        events: list[SplitEvent] = []
        self._take(self._scanner.rest(), events)
        if self._state == _BODY:
            self._close_body(events)
        elif self._header:                     # no header ever closed: the model wrote plain text
            self.collected.answer_text(_ANY_TOKEN.sub("", "".join(self._header)).strip(), events)
        return events

    def _take(self, text: str, events: list) -> None:
        if not text:
            return
        if self._state == _HEADER:
            self._header.append(text)
        elif self._recipient:
            self._call_body.append(text)
        elif self._channel == "analysis":
            self.collected.reasoning_text(text, events)
        else:
            if self._trim_leading:
                text = text.lstrip()
                self._trim_leading = not text
            self.collected.answer_text(text, events)

    def _open_body(self) -> None:
        header = "".join(self._header)
        channel = _CHANNEL.search(header)
        recipient = _RECIPIENT.search(header)
        self._channel = channel.group(1) if channel else ""
        self._recipient = recipient.group(1) if recipient else ""
        self._state, self._header, self._call_body = _BODY, [], []

    def _close_body(self, events: list) -> None:
        if self._recipient:
            name = self._recipient.removeprefix("functions.")
            self.collected.call(make_call(name, "".join(self._call_body)), events)
        self._state, self._channel, self._recipient, self._call_body = _HEADER, "", "", []
