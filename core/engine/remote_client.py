"""A remote engine: chat with a model served elsewhere over the OpenAI-compatible API.

llama-server, vLLM, Ollama, LM Studio and another LlamaDesk (`llamadesk-cli serve`) all answer
`GET /v1/models` and a streamed `POST /v1/chat/completions` (server-sent events). RemoteClient speaks
that and yields the same events as EngineClient.chat: TokenText for answer text, ReasoningText for
`reasoning_content` deltas (llama-server's and vLLM's reasoning field), ToolCallMade once a call's
streamed pieces are complete, and AnswerFinished with the figures the server gave (usage) and those
measured here (time to first token, tokens per second). The memory is the remote computer's: nothing
is loaded here.

The standard library's http.client, not an HTTP package: one request at a time, streamed line by line,
and stop() closes the socket, which every one of those servers reads as a client that left.
Every failure is a RemoteEngineError subclass with a sentence naming the endpoint.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence
from urllib.parse import urlsplit

from core.engine.errors import EngineError
from core.engine.protocol import (AnswerFinished, AnswerStats, ChatEvent, ReasoningText, SamplingSettings,
                                  ThinkingChoice, TokenText, ToolCall, ToolCallMade)
from core.settings import RemoteEndpoint, endpoint_url_problem  # the endpoints the user saved: declared once

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = 300.0     # longest wait for the next streamed line (a long prompt evaluating remotely)


class RemoteEngineError(EngineError):
    """The remote endpoint could not answer; str(error) names it."""


class RemoteUnreachable(RemoteEngineError):
    """Nothing answers at the endpoint's address, or the connection dropped."""


class RemoteUnauthorized(RemoteEngineError):
    """The endpoint refused the API key (401/403)."""


class RemoteModelGone(RemoteEngineError):
    """The endpoint no longer serves the model asked for (404, or a model_not_found error)."""


def api_base(endpoint: RemoteEndpoint) -> str:
    """The URL path under which /models and /chat/completions live ('/v1' unless the URL names it)."""
    path = urlsplit(endpoint.url).path.rstrip("/")
    return path if path.endswith("/v1") else f"{path}/v1"


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class RemoteClient:
    """Chats with one model of one endpoint. chat() streams one answer at a time; stop() is thread-safe."""

    def __init__(self, endpoint: RemoteEndpoint, model: str = "", *, timeout: float = ANSWER_TIMEOUT_S) -> None:
        problem = endpoint_url_problem(endpoint.url)
        if problem is not None:
            raise RemoteEngineError(problem)
        parts = urlsplit(endpoint.url.strip())
        self.endpoint = endpoint
        self.model = model
        self.timeout = timeout
        self._parts = parts
        self._current: http.client.HTTPConnection | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    # --- the endpoint's models -----------------------------------------------------------------------------

    def models(self) -> list[str]:
        """The model ids the endpoint serves (GET /v1/models), in its order."""
        connection = self._connect(CONNECT_TIMEOUT_S)
        try:
            response = self._request(connection, "GET", "/models", None)
            body = self._json(response.read())
        finally:
            connection.close()
        return [str(item["id"]) for item in body.get("data", []) if isinstance(item, dict) and "id" in item]

    # --- one answer ----------------------------------------------------------------------------------------

    def chat(self, messages: Sequence[dict], sampling: SamplingSettings = SamplingSettings(), *,
             thinking: ThinkingChoice = ThinkingChoice(), tools: Sequence[dict] = ()) -> Iterator[ChatEvent]:
        """Stream one answer: TokenText / ReasoningText / ToolCallMade events, then AnswerFinished.
        Raises RemoteEngineError (with a sentence) while iterating."""
        body = self._chat_body(messages, sampling, thinking, tools)
        self._stopped.clear()
        connection = self._connect(self.timeout)
        with self._lock:
            self._current = connection
        try:
            yield from self._stream(connection, body)
        finally:
            with self._lock:
                self._current = None
            connection.close()

    def stop(self) -> None:
        """End the answer being streamed: the connection closes, the server sees a client that left."""
        self._stopped.set()
        with self._lock:
            connection = self._current
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _chat_body(self, messages: Sequence[dict], sampling: SamplingSettings, thinking: ThinkingChoice,
                   tools: Sequence[dict]) -> dict:
        body: dict = {"model": self.model, "messages": [dict(m) for m in messages], "stream": True,
                      "stream_options": {"include_usage": True}, "temperature": sampling.temperature,
                      "top_p": sampling.top_p, "max_tokens": sampling.max_tokens}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if tools:
            body["tools"] = list(tools)
        if thinking.effort:
            body["reasoning_effort"] = thinking.effort
        if thinking.enabled is not None:  # llama-server's and vLLM's way to pass a template switch
            body["chat_template_kwargs"] = {"enable_thinking": thinking.enabled}
        return body

    def _stream(self, connection: http.client.HTTPConnection, body: dict) -> Iterator[ChatEvent]:
        started = time.monotonic()
        try:
            response = self._request(connection, "POST", "/chat/completions", body)
        except RemoteUnreachable:
            if self._stopped.is_set():
                return
            raise
        text, reasoning, calls = [], [], {}
        first_token_at: float | None = None
        usage: dict = {}
        finish = "stop"
        for chunk in self._events(response):
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                finish = choice.get("finish_reason") or finish
                for event in self._delta_events(delta, calls):
                    first_token_at = first_token_at or time.monotonic()
                    if isinstance(event, TokenText):
                        text.append(event.text)
                    elif isinstance(event, ReasoningText):
                        reasoning.append(event.text)
                    yield event
        made = tuple(ToolCall(parts.id or f"call_{index}", parts.name, "".join(parts.arguments))
                     for index, parts in sorted(calls.items()))
        for call in made:
            yield ToolCallMade(call)
        stop_reason = "cancelled" if self._stopped.is_set() else ("length" if finish == "length" else "stop")
        yield AnswerFinished("".join(text), self._stats(usage, started, first_token_at, stop_reason),
                             "".join(reasoning), made)

    @staticmethod
    def _delta_events(delta: dict, calls: dict[int, _ToolCallParts]) -> Iterator[ChatEvent]:
        if delta.get("reasoning_content"):
            yield ReasoningText(str(delta["reasoning_content"]))
        if delta.get("content"):
            yield TokenText(str(delta["content"]))
        for piece in delta.get("tool_calls") or []:
            parts = calls.setdefault(int(piece.get("index", len(calls))), _ToolCallParts())
            parts.id = piece.get("id") or parts.id
            function = piece.get("function") or {}
            parts.name = function.get("name") or parts.name
            parts.arguments.append(function.get("arguments") or "")

    @staticmethod
    def _stats(usage: dict, started: float, first_token_at: float | None, stop_reason: str) -> AnswerStats:
        ended = time.monotonic()
        completion = int(usage.get("completion_tokens") or 0)
        ttft = (first_token_at or ended) - started
        decoding = ended - (first_token_at or ended)
        rate = (completion - 1) / decoding if completion > 1 and decoding > 0 else 0.0
        return AnswerStats(prompt_tokens=int(usage.get("prompt_tokens") or 0), completion_tokens=completion,
                           ttft_seconds=ttft, prompt_tokens_per_second=0.0, tokens_per_second=rate,
                           context_used=0, context_size=0, stop_reason=stop_reason, reused_prefix_tokens=0,
                           dropped_messages=0, generation_seconds=decoding)

    def _events(self, response: http.client.HTTPResponse) -> Iterator[dict]:
        """The JSON objects of the server-sent events, until [DONE] or the end of the stream."""
        while True:
            try:
                line = response.readline()
            except (OSError, http.client.HTTPException) as error:
                if self._stopped.is_set():
                    return
                raise self._unreachable(f"dropped the connection mid-answer ({_reason(error)})") from None
            if not line:
                if self._stopped.is_set():
                    return
                return
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            chunk = self._json(data)
            if "error" in chunk:
                raise self._error_from(chunk["error"], 500)
            yield chunk

    # --- HTTP ----------------------------------------------------------------------------------------------

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        return kind(self._parts.hostname, self._parts.port, timeout=timeout)

    def _request(self, connection: http.client.HTTPConnection, method: str, path: str,
                 body: dict | None) -> http.client.HTTPResponse:
        headers = {"Accept": "application/json, text/event-stream"}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, api_base(self.endpoint) + path, payload, headers)
            response = connection.getresponse()
        except socket.timeout:
            raise self._unreachable("did not answer in time") from None
        except (OSError, http.client.HTTPException) as error:
            raise self._unreachable(f"could not be reached ({_reason(error)})") from None
        if response.status >= 400:
            raise self._error_from(self._error_body(response.read()), response.status)
        return response

    def _error_body(self, raw: bytes) -> dict:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return {"message": raw.decode("utf-8", "replace")[:200]}
        error = data.get("error", data) if isinstance(data, dict) else {}
        return error if isinstance(error, dict) else {"message": str(error)}

    def _error_from(self, error: object, status: int) -> RemoteEngineError:
        detail = error if isinstance(error, dict) else {"message": str(error)}
        message = str(detail.get("message") or "").strip().rstrip(".")
        code = str(detail.get("code") or "")
        where = self.endpoint.label
        if status in (401, 403):
            return RemoteUnauthorized(f"{where} refused the API key (HTTP {status}): check the key set for it "
                                      "in Settings.")
        if status == 404 or code == "model_not_found":
            model = f"the model '{self.model}'" if self.model else "this model"
            return RemoteModelGone(f"{where} no longer serves {model}" + (f" ({message})" if message else "")
                                   + ": pick another of its models.")
        return RemoteEngineError(f"{where} could not answer (HTTP {status}" + (f": {message}" if message else "")
                                 + ").")

    def _unreachable(self, what: str) -> RemoteUnreachable:
        return RemoteUnreachable(f"{self.endpoint.label} {what}: is the server running there, and is the "
                                 "address right?")

    def _json(self, raw: bytes) -> dict:
        try:
            data = json.loads(raw)
        except ValueError:
            raise RemoteEngineError(f"{self.endpoint.label} answered with something that is not JSON: is it an "
                                    "OpenAI-compatible server?") from None
        return data if isinstance(data, dict) else {}


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.lower()
