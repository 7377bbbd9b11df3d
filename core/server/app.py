"""The HTTP API: FastAPI routes in the shape of OpenAI's, over a ModelHost.

    app = create_app(ServerConfig(), ModelHost(HostOptions()))

Routes: GET /health, GET /v1/models[/{id}], POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings.
Every refusal is an OpenAI error object (errors.py); the guards (guards.py) check the key and the body size first.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import AsyncIterator, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from core.engine.errors import EngineError
from core.engine.protocol import AnswerFinished, SamplingSettings, ThinkingChoice
from core.server import streaming
from core.server.answer_stream import AnswerStream
from core.server.answers import ChatCompletion, TextCompletion, embedding_list
from core.server.config import ServerConfig
from core.server.errors import (INVALID_REQUEST, NOT_FOUND, SERVER, ApiError, bad_request, from_engine_error)
from core.server.grammar import ForcedCall, GrammarError, forced_call, response_format_grammar
from core.server.guards import BearerKey, BodyLimit
from core.server.model_host import Generation, Lease, ModelHost, ServedModel
from core.server.request_log import RequestObserver, RequestRecord
from core.server.schemas import (ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Message,
                                 NamedToolChoice, TextPart, unsupported)

log = logging.getLogger(__name__)

MAX_EMBEDDING_INPUTS = 256


def create_app(config: ServerConfig, host: ModelHost, *, observer: RequestObserver | None = None) -> FastAPI:
    app = FastAPI(title="LlamaDesk", docs_url=None, redoc_url=None, openapi_url=None)
    api = _Api(config, host, observer or (lambda record: None))
    app.add_api_route("/health", api.health, methods=["GET"])
    app.add_api_route("/v1/models", api.list_models, methods=["GET"])
    app.add_api_route("/v1/models/{model_id:path}", api.one_model, methods=["GET"])
    app.add_api_route("/v1/chat/completions", api.chat_completions, methods=["POST"])
    app.add_api_route("/v1/completions", api.completions, methods=["POST"])
    app.add_api_route("/v1/embeddings", api.embeddings, methods=["POST"])
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if config.api_key:
        app.add_middleware(BearerKey, api_key=config.api_key)
    if config.cors_origins:                 # added last: it runs first, so a browser's preflight gets its answer
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    return app


def _add_error_handlers(app: FastAPI) -> None:
    def answer(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers())

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return answer(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return answer(_validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = NOT_FOUND if error.status_code == 404 else INVALID_REQUEST
        message = "There is no such endpoint." if error.status_code == 404 else str(error.detail)
        return answer(ApiError(error.status_code, message, kind))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("the server failed on a request")
        return answer(ApiError(500, f"The server failed: {error!r}.", SERVER, "internal_error"))


def _validation_error(error: RequestValidationError) -> ApiError:
    problems = error.errors()
    if not problems:
        return bad_request("The request is not valid.")
    first = problems[0]
    where = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return bad_request("The request body is not valid JSON: " + first.get("msg", ""), code="invalid_json")
    param = ".".join(where) or None
    return bad_request(f"{param or 'The body'}: {first.get('msg', 'is not valid')}.", param=param)


class _Api:
    def __init__(self, config: ServerConfig, host: ModelHost, observer: RequestObserver) -> None:
        self.config = config
        self.host = host
        self.observer = observer

    # ---------------------------------------------------------------------------------- reading

    async def health(self) -> dict:
        return {"status": "ok", **self.host.status()}

    async def list_models(self) -> dict:
        import anyio.to_thread

        models = await anyio.to_thread.run_sync(self.host.models)
        return {"object": "list", "data": [self._model_object(m) for m in models]}

    async def one_model(self, model_id: str) -> dict:
        import anyio.to_thread

        return self._model_object(await anyio.to_thread.run_sync(self.host.resolve, model_id))

    def _model_object(self, model: ServedModel) -> dict:
        fit = model.fit
        plan = fit.plan if fit else None
        current = self.host.current
        return {"id": model.id, "object": "model", "created": model.created, "owned_by": "local",
                "path": str(model.path), "size": model.size, "source": model.source,
                "loaded": current is not None and current.path == model.path,
                "fit": {"verdict": plan.verdict if plan else None,
                        "explanation": plan.explanation if plan else (fit.error if fit else None),
                        "n_gpu_layers": plan.n_gpu_layers if plan else None,
                        "context": plan.context if plan else None,
                        "predicted_tokens_per_second": plan.predicted_tokens_per_second if plan else None}}

    # ---------------------------------------------------------------------------------- answering

    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        _refuse_unsupported(body)
        forced, grammar = _shape(body)
        tools = () if body.tool_choice == "none" else tuple(t.model_dump(exclude_none=True) for t in body.tools or ())
        completion = ChatCompletion(body.model, forced, _include_usage(body))
        await self._refuse_embedding_model(body.model)      # before leasing: no model loads only to refuse
        lease = await self.host.lease(body.model)
        with _released_on_error(lease):
            sampling = self._sampling(body, body.answer_limit(), grammar, lease)
            generation = Generation(tuple(_message_dict(m) for m in body.messages), sampling,
                                    _thinking(body.reasoning_effort), tools)
        return await self._answer(request, "/v1/chat/completions", body.stream, lease, generation, completion)

    async def completions(self, body: CompletionRequest, request: Request):
        """The prompt continued as raw text, as OpenAI's legacy completions do (no chat template)."""
        _refuse_unsupported(body)
        prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
        await self._refuse_embedding_model(body.model)      # before leasing: no model loads only to refuse
        lease = await self.host.lease(body.model)
        with _released_on_error(lease):
            sampling = self._sampling(body, body.max_tokens, None, lease)
            generation = Generation((), sampling, prompt=prompt)
        return await self._answer(request, "/v1/completions", body.stream, lease, generation,
                                  TextCompletion(body.model, _include_usage(body)))

    async def embeddings(self, body: EmbeddingRequest) -> dict:
        import anyio.to_thread

        texts = _embedding_texts(body.input)
        model = await anyio.to_thread.run_sync(self.host.resolve, body.model)
        if not model.embedding:
            raise bad_request(f"{model.id} is a chat model: it makes no embeddings. Ask an embedding model.",
                              param="model", code="model_not_embedding")
        lease = await self.host.lease(body.model)
        started = time.monotonic()
        try:
            embedded = await anyio.to_thread.run_sync(lease.embed, texts)
        except EngineError as error:
            api_error = replace(from_engine_error(error), param="input")
            self.observer(RequestRecord("/v1/embeddings", model.id, api_error.status, False,
                                        seconds=time.monotonic() - started, note=api_error.message))
            raise api_error from error
        finally:
            lease.release()
        self.observer(RequestRecord("/v1/embeddings", model.id, 200, False, embedded.tokens,
                                    seconds=time.monotonic() - started))
        return embedding_list(model.id, embedded, body.encoding_format)

    async def _refuse_embedding_model(self, name: str) -> None:
        import anyio.to_thread

        model = await anyio.to_thread.run_sync(self.host.resolve, name)
        if model.embedding:
            raise bad_request(f"{model.id} is an embedding model: it makes vectors, not text. "
                              "Ask it through /v1/embeddings, or name a chat model.", param="model",
                              code="model_not_chat")

    def _sampling(self, body, asked: int | None, grammar: str | None, lease: Lease) -> SamplingSettings:
        n_ctx = lease.loaded.n_ctx
        limit = min(self.config.max_tokens_limit or n_ctx, n_ctx)
        if asked is not None and asked > limit:
            raise bad_request(f"max_tokens is {asked}, but at most {limit} tokens can be generated here "
                              f"({lease.model.id} is loaded with a context of {n_ctx} tokens, prompt included).",
                              param="max_tokens", code="max_tokens_too_large")
        defaults = SamplingSettings()
        return SamplingSettings(
            temperature=defaults.temperature if body.temperature is None else body.temperature,
            top_p=defaults.top_p if body.top_p is None else body.top_p,
            seed=body.seed, max_tokens=asked or max(1, min(limit, n_ctx // 2)),
            stop=body.stop_strings(), grammar=grammar)

    async def _answer(self, request: Request, endpoint: str, stream: bool, lease: Lease, generation: Generation,
                      shape: ChatCompletion | TextCompletion):
        started = time.monotonic()
        model = lease.model.id
        self.observer(RequestRecord(endpoint, model, 200, True, stream=stream))

        def ended(answer: AnswerFinished | None, error: BaseException | None) -> None:
            status, note = 200, ""
            if isinstance(error, EngineError):
                api_error = from_engine_error(error)
                status, note = api_error.status, api_error.message
            elif error is not None:
                status, note = 500, repr(error)
            self.observer(_record(endpoint, model, status, answer, time.monotonic() - started, stream, note))

        answer = AnswerStream(lease, generation, ended)
        events = answer.events()
        try:
            async with _stopped_on_disconnect(request, answer):
                if not stream:
                    return shape.whole(await _last_event(events))
                first = await anext(events)          # an error before the first token still gets its status
        except EngineError as error:
            raise from_engine_error(error) from error
        opening = ([shape.first_chunk()] if isinstance(shape, ChatCompletion) else []) + shape.chunks(first)
        if isinstance(first, AnswerFinished):
            async def nothing_more() -> AsyncIterator:
                return
                yield
            body = streaming.event_stream(opening, nothing_more(), shape.chunks)
        else:
            body = streaming.event_stream(opening, events, shape.chunks)
        return StreamingResponse(body, media_type=streaming.MEDIA_TYPE, headers=streaming.HEADERS)


# ---------------------------------------------------------------------------------------- helpers


def _embedding_texts(given) -> tuple[str, ...]:
    if isinstance(given, str):
        return (given,)
    if given and all(isinstance(item, str) for item in given):
        if len(given) > MAX_EMBEDDING_INPUTS:
            raise bad_request(f"At most {MAX_EMBEDDING_INPUTS} texts can be embedded in one request; "
                              f"this one has {len(given)}.", param="input")
        return tuple(given)
    if not given:
        raise bad_request("input is empty: give a text, or a list of texts, to embed.", param="input")
    raise bad_request("This server embeds text: give input as a string or a list of strings, not token ids.",
                      param="input", code="unsupported_parameter")


def _refuse_unsupported(body) -> None:
    problem = unsupported(body)
    if problem is not None:
        raise bad_request(problem[1], param=problem[0], code="unsupported_parameter")


def _include_usage(body) -> bool:
    return bool(body.stream and body.stream_options and body.stream_options.include_usage)


def _shape(body: ChatCompletionRequest) -> tuple[ForcedCall | None, str | None]:
    """The forced tool call, and the grammar the answer must follow (a forced call's, or response_format's)."""
    choice = body.tool_choice
    try:
        if body.tools and (choice == "required" or isinstance(choice, NamedToolChoice)):
            functions = {t.function.name: t.function.parameters for t in body.tools}
            forced = forced_call(functions, choice.function.name if isinstance(choice, NamedToolChoice) else None)
            return forced, forced.grammar
        if isinstance(choice, NamedToolChoice) or choice == "required":
            raise bad_request("tool_choice asks for a tool call, but the request lists no tools.",
                              param="tool_choice")
        if body.response_format is not None:
            schema = body.response_format.json_schema.schema_ if body.response_format.json_schema else None
            return None, response_format_grammar(body.response_format.type, schema)
    except GrammarError as error:
        param = "tool_choice" if body.tools and choice not in (None, "auto", "none") else "response_format"
        raise bad_request(str(error), param=param, code="invalid_schema") from error
    return None, None


def _thinking(effort: str | None) -> ThinkingChoice:
    if effort is None:
        return ThinkingChoice()
    if effort == "none":
        return ThinkingChoice(enabled=False)
    return ThinkingChoice(enabled=True, effort="low" if effort == "minimal" else effort)


def _message_dict(message: Message) -> dict:
    """A message as the engine takes it: text content, a developer turn as system, tool calls as given."""
    content = message.content
    if isinstance(content, list):
        content = "".join(part.text for part in content if isinstance(part, TextPart))
    shaped: dict = {"role": "system" if message.role == "developer" else message.role, "content": content or ""}
    if message.tool_calls:
        shaped["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if message.tool_call_id:
        shaped["tool_call_id"] = message.tool_call_id
    if message.reasoning_content:
        shaped["reasoning_content"] = message.reasoning_content
    if message.name and message.role == "tool":
        shaped["name"] = message.name
    return shaped


async def _last_event(events: AsyncIterator) -> AnswerFinished:
    last = None
    async for event in events:
        last = event
    if not isinstance(last, AnswerFinished):
        raise EngineError("The engine ended the answer without finishing it.")
    return last


@contextmanager
def _released_on_error(lease: Lease) -> Iterator[None]:
    """Until its answer starts (the answer's thread then owns it), a failure gives the slot back."""
    try:
        yield
    except BaseException:
        lease.release()
        raise


@asynccontextmanager
async def _stopped_on_disconnect(request: Request, answer: AnswerStream) -> AsyncIterator[None]:
    """While inside, a client that hangs up stops the generation (the slot frees as soon as the engine stops)."""
    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        answer.stop()

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()


def _record(endpoint: str, model: str, status: int, answer: AnswerFinished | None, seconds: float, stream: bool,
            note: str) -> RequestRecord:
    if answer is None:
        return RequestRecord(endpoint, model, status, False, seconds=seconds, stream=stream,
                             note=note or "ended early")
    stats = answer.stats
    return RequestRecord(endpoint, model, status, False, stats.prompt_tokens, stats.completion_tokens,
                         stats.tokens_per_second, seconds, stream,
                         note or ("cancelled" if stats.stop_reason == "cancelled" else ""))
