"""EngineClient: the parent side of the engine. Plain Python, no Qt, no llama.cpp in this process.

    client = EngineClient()
    loaded = client.load(LoadSettings("model.gguf"), on_progress=print)
    for event in client.chat([{"role": "user", "content": "Hi"}]):   # on a worker thread
        ...          # TokenText / ReasoningText / ToolCallMade / ContextTrimmed / AnswerFinished
    client.stop()      # from any thread: the answer ends with stop_reason "cancelled"
    client.close()

Loaded with LoadSettings.n_parallel = N, the engine answers up to N chats at once (one llama.cpp
sequence each): iterate each chat() on its own thread. The answer chat() returns has a request_id and
its own stop(); client.stop() stops every answer. One reader at a time takes the worker's messages off
the pipe and hands each to the answer it names.

One worker process per loaded model. If it dies, the running chat() raises EngineCrashed with the
partial answer and the worker's last stderr lines, and the next load() starts a fresh process.
"""
from __future__ import annotations

import itertools
import logging
import signal
import threading
import weakref
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

from core.engine.errors import (EngineBusy, EngineCrashed, EngineError, EngineLoadError, ImageRefused, InvalidGrammar,
                                NotLoaded, PromptTooLong, TemplateFailed)
from core.engine.protocol import (AnswerFinished, ChatEvent, ChatFailed, ChatReply, ChatRequest, EmbedRequest,
                                  Embedded,
                                  FailureKind, LoadedModel, LoadFailed, LoadProgress, LoadRequest,
                                  LoadSettings, LoadSucceeded, PrepareRequest, SamplingSettings, StopRequest,
                                  ThinkingChoice, TokenText)
from core.engine.step_down import ladder
from core.machine import workers
from core.engine.worker_handle import WorkerDied, WorkerHandle, prune_crash_logs

log = logging.getLogger(__name__)

ANSWER_DRAIN_SECONDS = 2.0
CLOSE_WAIT_SECONDS = 10.0


class ChatStream:
    """One answer's events (iterate on one thread); stop() ends it from any thread."""

    def __init__(self, client: "EngineClient", request: ChatRequest) -> None:
        self.request_id = request.request_id
        self.early_stop = threading.Event()      # stop() came before the request reached the worker
        self._client = client
        self._events = client._stream(request, self.early_stop)   # (no reference back: no cycle)

    def __iter__(self) -> "ChatStream":
        return self

    def __next__(self) -> ChatEvent:
        return next(self._events)

    def close(self) -> None:
        """Stop iterating: the answer is stopped and drained, so its slot is free on return."""
        self._events.close()

    def stop(self) -> None:
        self._client.stop(self.request_id)


class EngineClient:
    def __init__(self) -> None:
        self._worker: WorkerHandle | None = None
        self._loaded: LoadedModel | None = None
        self._request_ids = itertools.count(1)
        self._load_lock = threading.Lock()       # one load or unload at a time
        self._send_lock = threading.Lock()       # one writer on the pipe
        self._state = threading.Condition()      # guards the fields below; notified on every change
        self._inboxes: dict[int, deque] = {}     # answers under way: their messages not yet read
        self._not_sent: weakref.WeakSet[ChatStream] = weakref.WeakSet()
        self._reading = False                    # a thread is reading the pipe for everyone
        self._dead: WorkerHandle | None = None   # a worker found dead while reading
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
        if not step_down or self._closing or not result.kind.may_step_down:
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
            if failure.kind.is_about_the_file or failure.kind is FailureKind.ENGINE or self._closing:
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

    @property
    def slots(self) -> int:
        """How many answers the loaded model can give at once (0 when none is loaded)."""
        loaded = self._loaded
        return max(1, loaded.settings.n_parallel) if loaded is not None else 0

    def chat(self, messages: Sequence[dict], sampling: SamplingSettings = SamplingSettings(), *,
             thinking: ThinkingChoice = ThinkingChoice(), tools: Sequence[dict] = ()) -> ChatStream:
        """Stream one answer. Raises NotLoaded at once; EngineCrashed, PromptTooLong, TemplateFailed,
        InvalidGrammar, and EngineError when every slot is answering, while iterating."""
        return self._start(ChatRequest(next(self._request_ids), tuple(dict(m) for m in messages), sampling,
                                       thinking, tuple(dict(tool) for tool in tools)))

    def complete(self, prompt: str, sampling: SamplingSettings = SamplingSettings()) -> ChatStream:
        """Stream the continuation of raw text (no chat template); raises and streams as chat() does."""
        return self._start(ChatRequest(next(self._request_ids), (), sampling, prompt=prompt))

    def prepare(self, messages: Sequence[dict], *, thinking: ThinkingChoice = ThinkingChoice(),
                tools: Sequence[dict] = ()) -> None:
        """Tell the engine this conversation comes next (PrepareRequest): it restores and evaluates it while idle,
        so its answer starts sooner. A hint: nothing is answered, and without a loaded model nothing happens."""
        worker = self._worker
        if worker is None or self._loaded is None:
            return
        try:
            self._send(worker, PrepareRequest(next(self._request_ids), tuple(dict(m) for m in messages), thinking,
                                              tuple(dict(tool) for tool in tools)))
        except WorkerDied as error:
            log.info("the engine could not be told what comes next: %s", error)

    def embed(self, texts: Sequence[str], *, truncate: bool = False) -> Embedded:
        """A unit vector per text from an embedding model (loaded with LoadSettings.embeddings). Blocking;
        raises NotLoaded, PromptTooLong (a text empty, or longer than one batch unless `truncate`), EngineCrashed or
        EngineError."""
        request = EmbedRequest(next(self._request_ids), tuple(texts), truncate)
        worker = self._begin_answer(request.request_id)
        try:
            self._send(worker, request)
            reply = self._receive_for(worker, request.request_id)
        except WorkerDied:
            raise self._crash_error(worker, "") from None
        finally:
            self._end_answer(request.request_id)
        if isinstance(reply, ChatFailed):
            raise _chat_error(reply)
        return reply

    def _start(self, request: ChatRequest) -> ChatStream:
        if self._loaded is None or self._worker is None:
            raise NotLoaded("No model is loaded: load one before chatting.")
        stream = ChatStream(self, request)
        with self._state:
            self._not_sent.add(stream)           # so stop() works even before iteration
        return stream

    def _stream(self, request: ChatRequest, early_stop: threading.Event) -> Iterator[ChatEvent]:
        worker = self._begin_answer(request.request_id)
        partial: list[str] = []
        finished = False
        try:
            self._send(worker, request)
            if early_stop.is_set():
                self._send(worker, StopRequest(request.request_id))
            while not finished:
                message = self._receive_for(worker, request.request_id)
                finished = isinstance(message, (AnswerFinished, ChatFailed))
                if finished:
                    self._end_answer(request.request_id)     # its slot is free, read to the end or not
                if isinstance(message, ChatFailed):
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
            self._end_answer(request.request_id)

    def _begin_answer(self, request_id: int) -> WorkerHandle:
        with self._state:
            for stream in [stream for stream in self._not_sent if stream.request_id == request_id]:
                self._not_sent.discard(stream)
            if self._worker is None or self._loaded is None:
                raise NotLoaded("No model is loaded: load one before chatting.")
            if len(self._inboxes) >= self.slots:
                raise EngineBusy(_busy_sentence(self.slots))
            self._inboxes[request_id] = deque()
            return self._worker

    def _end_answer(self, request_id: int) -> None:
        with self._state:
            self._inboxes.pop(request_id, None)
            self._state.notify_all()

    def _send(self, worker: WorkerHandle, message: object) -> None:
        with self._send_lock:
            worker.send(message)

    def _receive_for(self, worker: WorkerHandle, request_id: int) -> object:
        """The answer's next message. Whoever finds no message waiting and nobody reading reads the pipe,
        handing each message to the answer it names, until one is its own."""
        while True:
            with self._state:
                while True:
                    inbox = self._inboxes[request_id]
                    if inbox:
                        return inbox.popleft()
                    if self._dead is worker:
                        raise WorkerDied()
                    if not self._reading:
                        self._reading = True
                        break
                    self._state.wait()
            try:
                message = worker.receive()
            except WorkerDied:
                with self._state:
                    self._reading, self._dead = False, worker
                    self._state.notify_all()
                raise
            with self._state:
                self._reading = False
                if isinstance(message, ChatReply) and message.request_id in self._inboxes:
                    self._inboxes[message.request_id].append(message.message)
                else:
                    log.debug("dropping a message nobody waits for: %r", message)
                self._state.notify_all()

    def _finish_answer_then(self, action: Callable[[], None]) -> None:
        """Stop running answers, give their readers a moment to drain them, then act (killing if need be)."""
        self.stop()
        with self._state:
            drained = self._state.wait_for(lambda: not self._inboxes, timeout=ANSWER_DRAIN_SECONDS)
            if not drained:
                log.warning("an answer was not drained in %.0f s; ending its worker", ANSWER_DRAIN_SECONDS)
        action()

    def _abandon(self, worker: WorkerHandle, request_id: int) -> None:
        """Stop the answer nobody reads any more, and drain it so its slot is free on return."""
        try:
            self._ask_to_stop(worker, request_id)
            while not isinstance(self._receive_for(worker, request_id), (AnswerFinished, ChatFailed)):
                pass
        except WorkerDied:
            self._forget_dead_worker(worker)

    def stop(self, request_id: int | None = None) -> None:
        """Thread-safe. Ends that answer's prompt evaluation or generation (None: every answer); the model
        stays loaded."""
        with self._state:
            for stream in list(self._not_sent):
                if request_id in (None, stream.request_id):
                    stream.early_stop.set()
            running = [rid for rid in self._inboxes if request_id in (None, rid)]
        worker = self._worker
        if worker is None:
            return
        for rid in running:
            try:
                self._ask_to_stop(worker, rid)
            except WorkerDied:
                pass                             # its reader meets the death and reports it

    def _ask_to_stop(self, worker: WorkerHandle, request_id: int) -> None:
        worker.stop_value.value = request_id     # read by llama.cpp's abort callback mid-decode
        self._send(worker, StopRequest(request_id))

    # ----------------------------------------------------------------------------- endings

    def unload(self, wait_seconds: float | None = None) -> None:
        """Free the model: its worker process exits, and with it every byte it held. With `wait_seconds`, a load
        still running after that long (a worker that never answers) has its process killed, so whoever unloads
        (the window's close, the app's exit) is never held for ever."""
        self._closing = True
        try:
            if not self._load_lock.acquire(timeout=-1 if wait_seconds is None else wait_seconds):
                self._kill_worker("it was still loading when the engine closed")
                if not self._load_lock.acquire(timeout=wait_seconds):
                    log.error("the engine's load did not end after its worker was killed; closing without it")
                    return
            try:
                self._finish_answer_then(self._end_worker)
            finally:
                self._load_lock.release()
        finally:
            self._closing = False

    def close(self, wait_seconds: float = CLOSE_WAIT_SECONDS) -> None:
        """Unload for good, waiting at most about `wait_seconds` for a load under way (see unload)."""
        self.unload(wait_seconds)

    def _kill_worker(self, why: str) -> None:
        worker = self._worker
        if worker is not None and worker.process.is_alive():
            log.warning("killing engine worker %s: %s", worker.process.pid, why)
            worker.process.kill()

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

    def _forget_dead_worker(self, dead: WorkerHandle | None = None) -> None:
        """Forget the current worker (or `dead`, if it is still the current one) after it died."""
        if dead is not None and dead is not self._worker:
            return
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
        if self._loaded is not None and self._loaded.settings.rpc_servers:
            # A worker computer that went away is the likeliest cause: llama.cpp aborts when its RPC link drops.
            message = f"{workers.lost_workers_sentence(self._loaded.settings.rpc_servers)} {message}".strip()
        self._forget_dead_worker(worker)
        return EngineCrashed(message + " The partial answer is kept; load the model again to go on.",
                             partial_text=partial_text, stderr_tail=worker.stderr_tail(),
                             exit_code=worker.process.exitcode, log_path=str(worker.log_path))

    @staticmethod
    def _describe_death(worker: WorkerHandle, when: str) -> str:
        code = worker.exit_code()
        words = _last_words(worker.stderr_tail())
        detail = f" Its last words: {words}" if words else ""
        return f"The engine process stopped unexpectedly {when} ({_exit_text(code)}).{detail}"


_TELLING = (("GGML_ASSERT", "Fatal Python error", "terminate called", "GGML_ABORT", "Remote RPC server"),
            ("error", "Error", "abort", "failed"))


def _last_words(stderr_tail: str) -> str:
    """The last stderr line that names a problem (the strongest kind first), else the last line."""
    lines = [line.strip() for line in stderr_tail.splitlines() if line.strip()]
    for words in _TELLING:
        for line in reversed(lines):
            if any(word in line for word in words):
                return line
    return lines[-1] if lines else ""


def _busy_sentence(slots: int) -> str:
    if slots == 1:
        return "The engine is still answering: stop that answer first."
    return (f"The engine is answering {slots} chats already, one in each of its slots: stop one first, "
            "or load the model with more parallel slots.")


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
    if failure.kind == "image":
        return ImageRefused(failure.reason)
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
