"""The engine's events as OpenAI objects: a whole chat.completion / text_completion, or the chunks of a stream.

Answer text becomes ``content``, thinking ``reasoning_content``, the engine's tool calls ``tool_calls``. A call the
grammar forced (tool_choice naming a function, or "required") arrives as JSON text and is turned into a tool call
here, so it works whatever the model's own call syntax is.
"""
from __future__ import annotations

import base64
import struct
import time
import uuid
from dataclasses import dataclass, field

from core.engine.protocol import (AnswerFinished, AnswerStats, ChatEvent, Embedded, ReasoningText, TokenText,
                                  ToolCall, ToolCallMade)
from core.server.grammar import ForcedCall, read_forced_call


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(stats: AnswerStats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": stats.reasoning_tokens}}


def finish_reason(stats: AnswerStats, calls: tuple[ToolCall, ...]) -> str:
    if calls:
        return "tool_calls"
    return "length" if stats.stop_reason == "length" else "stop"


def tool_call_object(call: ToolCall, index: int | None = None) -> dict:
    body = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
    return body if index is None else {"index": index, **body}


def forced_calls(forced: ForcedCall | None, finished: AnswerFinished) -> tuple[ToolCall, ...]:
    """The call a grammar forced, read from the answer text; none if it was cut short."""
    if forced is None:
        return ()
    try:
        name, arguments = read_forced_call(forced, finished.text)
    except (ValueError, KeyError, TypeError):
        return ()
    return (ToolCall(new_id("call"), name, arguments),)


@dataclass
class ChatCompletion:
    """One chat completion being answered: its identity, and what it turns the engine's events into."""

    model: str
    forced: ForcedCall | None = None
    include_usage: bool = False
    id: str = field(default_factory=lambda: new_id("chatcmpl"))
    created: int = field(default_factory=lambda: int(time.time()))
    _calls_sent: int = 0

    def whole(self, finished: AnswerFinished) -> dict:
        calls = finished.tool_calls + forced_calls(self.forced, finished)
        message: dict = {"role": "assistant", "content": None if self.forced and calls else finished.text}
        if finished.reasoning:
            message["reasoning_content"] = finished.reasoning
        if calls:
            message["tool_calls"] = [tool_call_object(call) for call in calls]
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": finish_reason(finished.stats, calls)}],
                "usage": usage(finished.stats)}

    def first_chunk(self) -> dict:
        return self._chunk({"role": "assistant", "content": ""})

    def chunks(self, event: ChatEvent) -> list[dict]:
        """The stream chunks for one engine event (none for events a client does not see)."""
        if isinstance(event, TokenText) and event.text and self.forced is None:
            return [self._chunk({"content": event.text})]
        if isinstance(event, ReasoningText) and event.text:
            return [self._chunk({"reasoning_content": event.text})]
        if isinstance(event, ToolCallMade):
            return [self._call_chunk(event.call)]
        if isinstance(event, AnswerFinished):
            return self._last_chunks(event)
        return []

    def _last_chunks(self, finished: AnswerFinished) -> list[dict]:
        forced = forced_calls(self.forced, finished)
        chunks = [self._call_chunk(call) for call in forced]
        if self.forced is not None and not forced and finished.text:
            chunks.append(self._chunk({"content": finished.text}))     # cut short: show what came
        calls = finished.tool_calls + forced
        chunks.append(self._chunk({}, finish_reason(finished.stats, calls)))
        if self.include_usage:
            chunks.append({**self._chunk_head(), "choices": [], "usage": usage(finished.stats)})
        return chunks

    def _call_chunk(self, call: ToolCall) -> dict:
        index, self._calls_sent = self._calls_sent, self._calls_sent + 1
        return self._chunk({"tool_calls": [tool_call_object(call, index)]})

    def _chunk(self, delta: dict, reason: str | None = None) -> dict:
        body = {**self._chunk_head(),
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}]}
        if self.include_usage:
            body["usage"] = None
        return body

    def _chunk_head(self) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}


@dataclass
class TextCompletion:
    """One /v1/completions answer."""

    model: str
    include_usage: bool = False
    id: str = field(default_factory=lambda: new_id("cmpl"))
    created: int = field(default_factory=lambda: int(time.time()))

    def whole(self, finished: AnswerFinished) -> dict:
        return {**self._head(), "choices": [self._choice(finished.text, finish_reason(finished.stats, ()))],
                "usage": usage(finished.stats)}

    def chunks(self, event: ChatEvent) -> list[dict]:
        if isinstance(event, TokenText) and event.text:
            return [{**self._head(), "choices": [self._choice(event.text, None)]}]
        if isinstance(event, AnswerFinished):
            last = [{**self._head(), "choices": [self._choice("", finish_reason(event.stats, ()))]}]
            if self.include_usage:
                last.append({**self._head(), "choices": [], "usage": usage(event.stats)})
            return last
        return []

    def _head(self) -> dict:
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model}

    @staticmethod
    def _choice(text: str, reason: str | None) -> dict:
        return {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}


def embedding_list(model: str, embedded: Embedded, encoding_format: str) -> dict:
    """OpenAI's embeddings answer; "base64" packs each vector as little-endian float32 (what the SDK asks for)."""
    def encoded(vector: tuple[float, ...]):
        if encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        return list(vector)

    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": index, "embedding": encoded(vector)}
                     for index, vector in enumerate(embedded.vectors)],
            "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens}}
