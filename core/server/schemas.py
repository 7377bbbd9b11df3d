"""The requests the API accepts, validated by pydantic (FastAPI's own). Fields the OpenAI API defines but this
server does not act on are accepted and ignored, so ordinary clients work; the few that would change the answer in
a way we cannot honour (n > 1, logprobs, images) are refused with a sentence by ``unsupported``."""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_STOP_STRINGS = 4
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    type: Literal["text"]
    text: str


class OtherPart(_Open):
    type: str


class FunctionCall(_Open):
    name: str
    arguments: str = ""


class MessageToolCall(_Open):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[Union[TextPart, OtherPart]], None] = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class FunctionDefinition(_Open):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Open):
    name: str


class NamedToolChoice(_Open):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Open):
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Open):
    include_usage: bool = False


class _Sampling(_Open):
    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: Union[Literal["none", "auto", "required"], NamedToolChoice, None] = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    logprobs: bool | None = None

    def answer_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str]]
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: Union[str, list[str], list[int], list[list[int]]]
    encoding_format: Literal["float", "base64"] = "float"


def unsupported(request: _Sampling) -> tuple[str, str] | None:
    """(parameter, sentence) for the first request field this server cannot honour, else None."""
    if request.n != 1:
        return "n", "This server makes one choice per request: n must be 1."
    if isinstance(request, ChatCompletionRequest):
        if request.logprobs:
            return "logprobs", "This server does not return log probabilities."
        for message in request.messages:
            if isinstance(message.content, list) and any(not isinstance(p, TextPart) for p in message.content):
                return "messages", "This server takes text only: images and other parts are not supported."
    if isinstance(request, CompletionRequest):
        if request.echo or request.suffix or request.logprobs:
            return "echo" if request.echo else "suffix" if request.suffix else "logprobs", \
                "This server does not support echo, suffix or logprobs on completions."
        if isinstance(request.prompt, list) and len(request.prompt) != 1:
            return "prompt", "This server completes one prompt per request."
    if len(request.stop_strings()) > MAX_STOP_STRINGS:
        return "stop", f"At most {MAX_STOP_STRINGS} stop strings are allowed."
    return None
