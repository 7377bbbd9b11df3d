"""Server-sent events as the OpenAI API streams them: one ``data: {json}`` event per chunk, ``data: [DONE]`` last.
An engine failure after the stream has begun arrives as a ``data: {"error": ...}`` event (the status line is
already sent), which the OpenAI SDK raises as an APIError."""
from __future__ import annotations

import json
from typing import AsyncIterator, Callable

from core.engine.errors import EngineError
from core.engine.protocol import ChatEvent
from core.server.errors import from_engine_error

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(data: dict) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def event_stream(opening: list[dict], events: AsyncIterator[ChatEvent],
                       chunks: Callable[[ChatEvent], list[dict]]) -> AsyncIterator[bytes]:
    """The SSE body: the opening chunks, then each event's chunks, then [DONE]."""
    try:
        for chunk in opening:
            yield event(chunk)
        async for item in events:
            for chunk in chunks(item):
                yield event(chunk)
        yield DONE
    except EngineError as error:
        yield event(from_engine_error(error).body())
