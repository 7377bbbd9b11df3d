"""The API's errors as OpenAI error objects: {"error": {"message", "type", "param", "code"}} with the right status.

Every refusal the server makes is an ApiError; engine and planner errors are translated in one place
(``from_engine_error``) so a client always gets a sentence it can show, never a stack trace.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.engine.errors import (EngineBusy, EngineCrashed, EngineError, EngineLoadError, InvalidGrammar, NotLoaded,
                                PromptTooLong, TemplateFailed)

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
NOT_FOUND = "not_found_error"
RATE_LIMIT = "rate_limit_error"
SERVER = "server_error"
OVERLOADED = "overloaded_error"


@dataclass
class ApiError(Exception):
    status: int
    message: str
    type: str = INVALID_REQUEST
    code: str | None = None
    param: str | None = None
    retry_after: int | None = None   # seconds, sent as the Retry-After header

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return headers


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, INVALID_REQUEST, code, param)


def unknown_model(name: str) -> ApiError:
    return ApiError(404, f"The model {name!r} is not on this computer: GET /v1/models lists the ones that are.",
                    NOT_FOUND, "model_not_found", "model")


def busy(message: str, retry_after: int, *, status: int = 429) -> ApiError:
    kind = RATE_LIMIT if status == 429 else OVERLOADED
    return ApiError(status, message, kind, "server_busy", None, max(1, retry_after))


def from_engine_error(error: EngineError) -> ApiError:
    """The status and sentence for an engine failure."""
    if isinstance(error, PromptTooLong):
        return ApiError(400, str(error), INVALID_REQUEST, "context_length_exceeded", "messages")
    if isinstance(error, InvalidGrammar):
        return ApiError(400, str(error), INVALID_REQUEST, "invalid_grammar", "response_format")
    if isinstance(error, TemplateFailed):
        return ApiError(400, str(error), INVALID_REQUEST, "template_failed", "messages")
    if isinstance(error, EngineLoadError):
        return ApiError(500, str(error), SERVER, "model_load_failed")
    if isinstance(error, EngineCrashed):
        return ApiError(500, str(error), SERVER, "engine_crashed")
    if isinstance(error, EngineBusy):
        return ApiError(503, str(error), OVERLOADED, "engine_busy", retry_after=2)
    if isinstance(error, NotLoaded):
        return ApiError(503, str(error), OVERLOADED, "model_not_loaded", retry_after=1)
    return ApiError(500, str(error), SERVER, "engine_error")
