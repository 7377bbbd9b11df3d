"""What every request passes before the routes see it: the body size limit and the API key.

Both are plain ASGI middleware so a refusal costs nothing: a body announced larger than the limit is refused with
413 before a byte of it is read, one that grows past the limit while arriving (chunked) is cut off at the limit,
and a request without the key never reaches a route.
"""
from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.server.errors import AUTHENTICATION, INVALID_REQUEST, ApiError

OPEN_PATHS = ("/health",)          # answered without the key: says only whether the server is up


async def send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body is larger than this server accepts ({limit} bytes).",
                    INVALID_REQUEST, "request_too_large")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = dict(scope["headers"]).get(b"content-length")
        if announced is not None and (not announced.isdigit() or int(announced) > self.max_bytes):
            await send_error(send, too_large(self.max_bytes))
            return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:     # a chunked body grew past the limit: refuse, stop reading
                    refused = True
                    await send_error(send, too_large(self.max_bytes))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:                       # after the 413 the route's own answer has nowhere to go
                await send(message)

        await self.app(scope, counted_receive, guarded_send)


class BearerKey:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send_error(send, ApiError(401, "A valid API key is required: send it as "
                                                     "'Authorization: Bearer KEY'.", AUTHENTICATION,
                                                "invalid_api_key"))
                return
        await self.app(scope, receive, send)
