"""The engine's errors. Each carries a sentence a user can read."""
from __future__ import annotations


class EngineError(RuntimeError):
    """Something the engine could not do; str(error) is a sentence for the user."""


class EngineLoadError(EngineError):
    """The model could not be loaded, even after stepping down (when allowed)."""

    def __init__(self, message: str, *, kind: str = "unknown", steps: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.steps = steps


class EngineCrashed(EngineError):
    """The worker process died (segfault, abort, out-of-memory killer, kill -9). Load again to go on."""

    def __init__(self, message: str, *, partial_text: str = "", stderr_tail: str = "",
                 exit_code: int | None = None, log_path: str | None = None) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.stderr_tail = stderr_tail
        self.exit_code = exit_code
        self.log_path = log_path


class PromptTooLong(EngineError):
    """Even the system prompt and the last message alone do not fit in the context."""


class EngineBusy(EngineError):
    """Every slot is answering: try again once one is free."""


class NotLoaded(EngineError):
    """chat() was called with no model loaded."""


class InvalidGrammar(EngineError):
    """SamplingSettings.grammar is not a GBNF grammar llama.cpp can use."""


class TemplateFailed(EngineError):
    """The model's chat template could not render the conversation (it refused, failed, looped or
    allocated without bound). Nothing about the model's memory: loading it differently will not help."""


class ImageRefused(EngineError):
    """An attached image cannot be used: missing, not an image, too large, or sent to a model that cannot see."""
