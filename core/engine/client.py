"""EngineClient: the parent side of the engine. Plain Python, no Qt, no llama.cpp in this process.

    client = EngineClient()
    loaded = client.load(LoadSettings("model.gguf"), on_progress=print)
    for event in client.chat([{"role": "user", "content": "Hi"}]):   # on a worker thread
        ...          # TokenText / ReasoningText / ToolCallMade / ContextTrimmed / AnswerFinished
    client.stop()      # from any thread: the answer ends with stop_reason "cancelled"
    client.close()

One worker process per loaded model. If it dies, the running chat() raises EngineCrashed with the
partial answer and the worker's last stderr lines, and the next load() starts a fresh process.
"""
from __future__ import annotations

import itertools
import logging
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

from core.engine.errors import (EngineCrashed, EngineError, EngineLoadError, InvalidGrammar, NotLoaded,
                                PromptTooLong, TemplateFailed)
from core.engine.protocol import (AnswerFinished, ChatEvent, ChatFailed, ChatRequest,
                                  FailureKind, LoadedModel, LoadFailed, LoadProgress, LoadRequest,
                                  LoadSettings, LoadSucceeded, SamplingSettings, ThinkingChoice,
                                  TokenText)
from core.engine.step_down import ladder
from core.engine.worker_handle import WorkerDied, WorkerHandle, prune_crash_logs

log = logging.getLogger(__name__)

ANSWER_DRAIN_SECONDS = 2.0


class EngineClient:
    def __init__(self) -> None:
        self._worker: WorkerHandle | None = None
        self._loaded: LoadedModel | None = None
        self._request_ids = itertools.count(1)
        self._current_request = 0
        self._load_lock = threading.Lock()       # one load or unload at a time
        self._state = threading.Condition()      # guards _answering; notified when an answer ends
        self._answering = False
        self._closing = False

    # ------------------------------------------------------------------------------- state

    @property
    def pid(self) -> int | None:
        return self._worker.process.pid if self._worker is not None else None

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def is_alive(self) -> bool:
        return self._worker is not None and self._worker.process.is_alive()

    # -------------------------------------------------------------------------------- load

    def load(self, settings: LoadSettings, *, on_progress: Callable[[float], None] | None = None,
             step_down: bool = True) -> LoadedModel:
        """Load in a fresh worker; on a memory failure step down (when allowed). Blocking."""
        with self._load_lock:
            self._finish_answer_then(self._end_worker)
            try:
                return self._load_with_ladder(settings, on_progress, step_down)
            except EngineLoadError:
                self._end_worker()               # no idle process left behind
                raise

    def _load_with_ladder(self, settings: LoadSettings, on_progress: Callable[[float], None] | None,
                          step_down: bool) -> LoadedModel:
        result = self._attempt(settings, on_progress)
        if isinstance(result, LoadedModel):
            return self._accept(result, ())
        if not step_down or not result.kind.may_step_down:
            raise EngineLoadError(result.reason, kind=result.kind.value)
        return self._step_down(settings, result, on_progress)

    def _step_down(self, settings: LoadSettings, failure: LoadFailed,
                   on_progress: Callable[[float], None] | None) -> LoadedModel:
        steps: list[str] = []
        for rung in ladder(settings, failure.facts):
            steps.append(f"{rung.change} (after: {failure.reason})")
            log.info("stepping down: %s", steps[-1])
            result = self._attempt(rung.settings, on_progress)
            if isinstance(result, LoadedModel):
                return self._accept(result, tuple(steps))
            failure = result
            if failure.kind.is_about_the_file or failure.kind is FailureKind.ENGINE:
                break
        tried = f", even after stepping down ({'; '.join(_changes(steps))})" if steps else ""
        raise EngineLoadError(f"{Path(settings.model_path).name} could not be loaded{tried}. "
                              f"Last error: {failure.reason}", kind=failure.kind.value, steps=tuple(steps))

    def _attempt(self, settings: LoadSettings,
                 on_progress: Callable[[float], None] | None) -> LoadedModel | LoadFailed:
        worker = self._ensure_worker()
        try:
            worker.send(LoadRequest(settings))
            while True:
                message = worker.receive()
                if isinstance(message, LoadProgress):
                    if on_progress is not None:
                        on_progress(message.fraction)
                elif isinstance(message, LoadSucceeded):
                    return message.model
                elif isinstance(message, LoadFailed):
                    return message
        except WorkerDied:
            reason = self._describe_death(worker, "while loading the model")
            killed = (worker.process.exitcode or 0) < 0      # by a signal: abort, OOM killer ...
            self._forget_dead_worker()
            return LoadFailed(FailureKind.UNKNOWN if killed else FailureKind.ENGINE, reason)

    def _accept(self, model: LoadedModel, steps: tuple[str, ...]) -> LoadedModel:
        self._loaded = replace(model, steps=steps)
        log.info("loaded %s: %s, %d/%d layers on %s, n_ctx %d, %.1f s", model.model_path,
                 model.description, model.n_gpu_layers, model.n_layers + 1, model.backend,
                 model.n_ctx, model.load_seconds)
        return self._loaded

    # -------------------------------------------------------------------------------- chat

    def chat(self, messages: Sequence[dict], sampling: SamplingSettings = SamplingSettings(), *,
             thinking: ThinkingChoice = ThinkingChoice(), tools: Sequence[dict] = ()) -> Iterator[ChatEvent]:
        """Stream one answer. Raises NotLoaded at once; EngineCrashed, PromptTooLong, TemplateFailed,
        InvalidGrammar while iterating."""
        if self._loaded is None or self._worker is None:
            raise NotLoaded("No model is loaded: load one before chatting.")
        request = ChatRequest(next(self._request_ids), tuple(dict(m) for m in messages), sampling,
                              thinking, tuple(dict(tool) for tool in tools))
        with self._state:
            if not self._answering:                        # so stop() works even before iteration
                self._current_request = request.request_id
        return self._stream(request)

    def _stream(self, request: ChatRequest) -> Iterator[ChatEvent]:
        worker = self._begin_answer(request.request_id)
        partial: list[str] = []
        finished = False
        try:
            worker.send(request)
            while not finished:
                message = worker.receive()
                finished = isinstance(message, AnswerFinished)
                if isinstance(message, ChatFailed):
                    finished = True
                    raise _chat_error(message)
                if isinstance(message, TokenText):
                    partial.append(message.text)
                yield message
        except WorkerDied:
            finished = True
            raise self._crash_error(worker, "".join(partial)) from None
        finally:
            if not finished:                     # the caller stopped iterating early
                self._abandon(worker, request.request_id)
            self._end_answer()

    def _begin_answer(self, request_id: int) -> WorkerHandle:
        with self._state:
            if self._answering:
                raise EngineError("The engine is still answering: stop that answer first.")
            if self._worker is None or self._loaded is None:
                raise NotLoaded("No model is loaded: load one before chatting.")
            self._answering = True
            self._current_request = request_id
            return self._worker

    def _end_answer(self) -> None:
        with self._state:
            self._answering = False
            self._state.notify_all()

    def _finish_answer_then(self, action: Callable[[], None]) -> None:
        """Stop a running answer, give its reader a moment to drain it, then act (killing if need be)."""
        self.stop()
        with self._state:
            drained = self._state.wait_for(lambda: not self._answering, timeout=ANSWER_DRAIN_SECONDS)
            if not drained:
                log.warning("an answer was not drained in %.0f s; ending its worker", ANSWER_DRAIN_SECONDS)
        action()

    def _abandon(self, worker: WorkerHandle, request_id: int) -> None:
        """Stop the answer nobody reads any more, and drain it so the next chat starts clean."""
        worker.stop_value.value = request_id
        try:
            while not isinstance(worker.receive(), (AnswerFinished, ChatFailed)):
                pass
        except WorkerDied:
            self._forget_dead_worker()

    def stop(self) -> None:
        """Thread-safe. Ends the current prompt evaluation or generation; the model stays loaded."""
        worker = self._worker
        if worker is not None:
            worker.stop_value.value = self._current_request

    # ----------------------------------------------------------------------------- endings

    def unload(self) -> None:
        """Free the model: its worker process exits, and with it every byte it held."""
        self._closing = True
        try:
            with self._load_lock:
                self._finish_answer_then(self._end_worker)
        finally:
            self._closing = False

    def close(self) -> None:
        self.unload()

    def __enter__(self) -> "EngineClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _ensure_worker(self) -> WorkerHandle:
        if self._worker is None or not self._worker.process.is_alive():
            self._forget_dead_worker()
            self._worker = WorkerHandle()
        return self._worker

    def _end_worker(self) -> None:
        worker, self._worker, self._loaded = self._worker, None, None
        if worker is not None:
            worker.shut_down()

    def _forget_dead_worker(self) -> None:
        worker, self._worker, self._loaded = self._worker, None, None
        if worker is not None:
            worker.exit_code()
            worker.connection.close()
            prune_crash_logs(worker.log_path.parent)

    # ------------------------------------------------------------------------------ crashes

    def _crash_error(self, worker: WorkerHandle, partial_text: str) -> EngineError:
        if self._closing:
            return EngineError("The model was unloaded while it was answering.")
        message = self._describe_death(worker, "while answering")
        self._forget_dead_worker()
        return EngineCrashed(message + " The partial answer is kept; load the model again to go on.",
                             partial_text=partial_text, stderr_tail=worker.stderr_tail(),
                             exit_code=worker.process.exitcode, log_path=str(worker.log_path))

    @staticmethod
    def _describe_death(worker: WorkerHandle, when: str) -> str:
        code = worker.exit_code()
        words = _last_words(worker.stderr_tail())
        detail = f" Its last words: {words}" if words else ""
        return f"The engine process stopped unexpectedly {when} ({_exit_text(code)}).{detail}"


_TELLING = (("GGML_ASSERT", "Fatal Python error", "terminate called", "GGML_ABORT"),
            ("error", "Error", "abort", "failed"))


def _last_words(stderr_tail: str) -> str:
    """The last stderr line that names a problem (the strongest kind first), else the last line."""
    lines = [line.strip() for line in stderr_tail.splitlines() if line.strip()]
    for words in _TELLING:
        for line in reversed(lines):
            if any(word in line for word in words):
                return line
    return lines[-1] if lines else ""


def _changes(steps: Sequence[str]) -> list[str]:
    return [step.split(" (after:", 1)[0] for step in steps]


def _chat_error(failure: ChatFailed) -> EngineError:
    if failure.kind == "prompt_too_long":
        return PromptTooLong(failure.reason)
    if failure.kind == "not_loaded":
        return NotLoaded(failure.reason)
    if failure.kind == "template":
        return TemplateFailed(failure.reason)
    if failure.kind == "grammar":
        return InvalidGrammar(failure.reason)
    return EngineError(failure.reason)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hints = {"SIGKILL": "killed, perhaps by the out-of-memory killer",
                 "SIGSEGV": "a crash inside llama.cpp", "SIGABRT": "llama.cpp aborted"}
        return f"{name}: {hints[name]}" if name in hints else name
    return f"exit code {code}"
