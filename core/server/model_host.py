"""Which model the server holds: the models it can serve (the local library, plus one named on the command line),
loading one on demand by name or path after the one fit check, unloading it when idle, and the slots requests wait
for (request_queue). It holds one model, loaded with --parallel N engine slots (llama.cpp sequences, each with the
whole context, all counted by the plan), and answers up to N requests at once.

    host = ModelHost(HostOptions(idle_unload_seconds=600))
    lease = await host.lease("SmolLM2-135M-Instruct.Q4_1")     # waits for a slot, loads if need be
    for event in lease.chat(generation): ...                   # on a worker thread
    lease.release()                                            # from any thread, once

Given an engine (the desktop window's), the host borrows it instead: it answers with the model the window has
loaded, never loads, unloads or closes that engine itself, and refuses other models in a sentence. The window and
the server then share one model in memory, and neither takes it from the other.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from core import settings as settings_store
from core.engine.client import ChatStream, EngineClient
from core.engine.errors import EngineError
from core.engine.protocol import ChatEvent, Embedded, LoadedModel, SamplingSettings, ThinkingChoice
from core.fit.choice import choice_from_settings
from core.fit.load_preparation import prepare_load
from core.machine import hardware
from core.models import library
from core.models.fit_check import FileFit, FileRef, FitConditions, check_file
from core.server.errors import ApiError, INVALID_REQUEST, OVERLOADED, busy, from_engine_error, unknown_model
from core.server.request_queue import QueueFull, SlotQueue

log = logging.getLogger(__name__)

CATALOG_SECONDS = 30.0           # how long a library scan and its fit checks are reused
DEFAULT_ANSWER_SECONDS = 10.0    # Retry-After's guess before any answer was timed


@dataclass(frozen=True)
class HostOptions:
    idle_unload_seconds: float | None = 600.0   # None or 0: keep the model loaded
    parallel: int = 1                           # requests answered at once: the engine's slots
    waiting_limit: int = 16
    context: int | None = None                  # None: the saved settings' context
    threads: int | None = None
    folders: tuple[Path, ...] = ()              # more folders to look for models in


@dataclass(frozen=True)
class ServedModel:
    """A model the server can answer with: ``id`` is the name clients send."""

    id: str
    path: Path
    size: int
    source: str
    created: int
    fit: FileFit | None = field(default=None, compare=False)
    embedding: bool = False


@dataclass(frozen=True)
class Generation:
    """What one answer needs from the engine."""

    messages: tuple[dict, ...]
    sampling: SamplingSettings
    thinking: ThinkingChoice = ThinkingChoice()
    tools: tuple[dict, ...] = ()
    prompt: str | None = None              # /v1/completions: raw text to continue, no chat template


class Lease:
    """A slot held for one request, with the model loaded in it. Release exactly once, from any thread."""

    def __init__(self, host: "ModelHost", model: ServedModel, loaded: LoadedModel) -> None:
        self.host = host
        self.model = model
        self.loaded = loaded
        self.started = time.monotonic()
        self._released = False
        self._lock = threading.Lock()
        self._answer: ChatStream | None = None

    def chat(self, generation: Generation) -> Iterator[ChatEvent]:
        """The engine's events for this answer (blocking: iterate on a worker thread)."""
        if generation.prompt is not None:
            self._answer = self.host.engine.complete(generation.prompt, generation.sampling)
        else:
            self._answer = self.host.engine.chat(generation.messages, generation.sampling,
                                                 thinking=generation.thinking, tools=generation.tools)
        return self._answer

    def embed(self, texts: tuple[str, ...]) -> Embedded:
        """The texts' vectors from the embedding model this lease holds (blocking: call on a worker thread)."""
        return self.host.engine.embed(texts)

    def stop(self) -> None:
        """Stop this lease's answer only (the other slots go on); before chat() there is nothing to stop."""
        answer = self._answer
        if answer is not None:
            answer.stop()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self.host._released(time.monotonic() - self.started)


class ModelHost:
    def __init__(self, options: HostOptions = HostOptions(), *,
                 probe: Callable[[], hardware.HardwareSnapshot] = hardware.probe,
                 engine: EngineClient | None = None) -> None:
        self.options = options
        self.borrowed = engine is not None        # the window's engine: it loads and unloads, not us
        self.engine = engine or EngineClient()
        self.queue = SlotQueue(max(1, options.parallel), options.waiting_limit)
        self._probe = probe
        self._pinned: list[ServedModel] = []
        self._catalog: tuple[float, list[ServedModel]] | None = None
        self._state = threading.Lock()            # guards the fields below
        self._load_lock = threading.Lock()        # one load or unload at a time
        self._current: ServedModel | None = None
        self._active = 0
        self._idle_timer: threading.Timer | None = None
        self._answer_seconds = DEFAULT_ANSWER_SECONDS
        self._closed = False
        self._hardware: tuple[float, hardware.HardwareSnapshot] | None = None

    # ----------------------------------------------------------------------------------- catalog

    def models(self) -> list[ServedModel]:
        """Every model the server can serve, with this machine's fit verdict. Blocking (headers, probe)."""
        self._list_the_window_model()
        cached = self._catalog
        if cached is not None and time.monotonic() - cached[0] < CATALOG_SECONDS:
            return cached[1]
        conditions = self._conditions()
        found = library.scan(library.LibrarySources(user_dirs=self._folders()))
        served = [_served(m.name, m.path, m.size, m.source, m.info, m.error, conditions) for m in found]
        known = {model.path.resolve() for model in served}
        served += [m for m in self._pinned if m.path.resolve() not in known]
        self._catalog = (time.monotonic(), served)
        return served

    def resolve(self, name: str) -> ServedModel:
        """The model a request names: a library model's name, a served id, or a .gguf path. ApiError 404 if none."""
        self._list_the_window_model()
        for model in self._pinned:
            if name in (model.id, str(model.path)):
                return model
        current = self._current
        if current is not None and name in (current.id, str(current.path)):
            return current
        path = Path(name).expanduser()
        if name.lower().endswith(".gguf") and path.is_absolute() and path.is_file():
            return self._add_path(path)
        for model in self.models():
            if name in (model.id, str(model.path), model.path.name):
                return model
        raise unknown_model(name)

    def pin(self, name: str) -> ServedModel:
        """A model given at start (--model): listed even outside the library, and loaded now. Blocking."""
        path = Path(name).expanduser()
        model = self._add_path(path.resolve()) if path.is_file() else self.resolve(name)
        with self._load_lock:
            self._load(model)
        self._start_idle_timer()
        return model

    def _list_the_window_model(self) -> None:
        """A borrowed engine's model is served even when the window opened it from outside the library."""
        loaded = self.engine.loaded if self.borrowed else None
        if loaded is None:
            return
        path = Path(loaded.model_path)
        if path.is_file() and not any(model.path == path for model in self._pinned):
            self._add_path(path)

    def _add_path(self, path: Path) -> ServedModel:
        model = _served(path.name.removesuffix(".gguf"), path, path.stat().st_size, "path", None, None,
                        self._conditions())
        self._pinned = [m for m in self._pinned if m.path != path] + [model]
        self._catalog = None
        return model

    # ------------------------------------------------------------------------------------ leases

    async def lease(self, name: str) -> Lease:
        """Wait for a slot and have ``name`` loaded in it. ApiError: unknown (404), busy (429/503), too large."""
        import anyio.to_thread

        if self._closed:
            raise busy("The server is shutting down.", 5, status=503)
        model = await anyio.to_thread.run_sync(self.resolve, name)
        self._refuse_a_second_model(model)
        try:
            await self.queue.acquire()
        except QueueFull:
            raise busy(f"The server is busy: {self.queue.busy} request(s) answering and {self.queue.waiting} "
                       "waiting. Try again shortly.", self._retry_after()) from None
        with self._state:
            self._active += 1
            self._cancel_idle_timer()
        try:
            loaded = await anyio.to_thread.run_sync(self._ensure_loaded, model)
        except BaseException:
            self._released(None)
            raise
        return Lease(self, model, loaded)

    def _refuse_a_second_model(self, model: ServedModel) -> None:
        """One model at a time: another one loads only once the current one has nothing to answer."""
        current = self.current
        if current is None or current.path == model.path:
            return
        if self.queue.busy or self.queue.waiting:
            raise busy(f"{current.id} is answering other requests, and this server holds one model at a time: "
                       f"{model.id} can be loaded once they are done.", self._retry_after(), status=503)

    def _ensure_loaded(self, model: ServedModel) -> LoadedModel:
        with self._load_lock:
            loaded = self.engine.loaded
            if self.borrowed:
                return self._borrowed_model(model, loaded)
            if loaded is not None and self._current is not None and self._current.path == model.path:
                return loaded
            return self._load(model)

    def _borrowed_model(self, model: ServedModel, loaded: LoadedModel | None) -> LoadedModel:
        """The window's model when it is the one asked for; otherwise a refusal that says what to do."""
        if loaded is None:
            raise ApiError(503, f"LlamaDesk has no model loaded right now: open {model.id} in its window, and the "
                           "server answers with it.", OVERLOADED, "model_not_loaded", "model", retry_after=10)
        if Path(loaded.model_path).resolve() != model.path.resolve():
            raise ApiError(400, f"LlamaDesk's window has {Path(loaded.model_path).name} loaded, and the server "
                           f"answers with that model only: ask for it, or open {model.id} in the window.",
                           INVALID_REQUEST, "model_not_loaded", "model")
        self._current = model
        return loaded

    def _load(self, model: ServedModel) -> LoadedModel:
        if self._current is not None:
            log.info("unloading %s to load %s", self._current.id, model.id)
            self.engine.unload()
            self._current = None
        conditions = self._conditions(fresh=True)
        fit = check_file(FileRef(model.path.name, local_path=model.path), conditions)
        if fit.plan is None:
            raise ApiError(400, f"{model.id} cannot be read: {fit.error}", INVALID_REQUEST, "model_unreadable",
                           "model")
        if not fit.plan.fits:
            raise ApiError(400, f"{model.id} is too large for this computer: {fit.plan.explanation}",
                           INVALID_REQUEST, "model_too_large", "model")
        prepared = prepare_load(str(model.path), fit.choice or conditions.choice, threads=self.options.threads,
                                safety_margin_bytes=conditions.margin_bytes, snapshot=conditions.hardware,
                                n_parallel=self.queue.slots)
        if not prepared.plan.fits:
            raise ApiError(400, f"{model.id} with {self.queue.slots} parallel slots is too large for this computer: "
                           f"{prepared.plan.explanation} Start the server with a smaller --parallel.",
                           INVALID_REQUEST, "model_too_large", "model")
        settings = replace(prepared.settings, embeddings=True) if model.embedding else prepared.settings
        try:
            loaded = self.engine.load(settings)
        except EngineError as error:
            raise from_engine_error(error) from error
        self._current = model
        log.info("serving %s (n_ctx %d)", model.id, loaded.n_ctx)
        return loaded

    def _released(self, seconds: float | None) -> None:
        with self._state:
            self._active -= 1
            if seconds is not None:
                self._answer_seconds += 0.3 * (seconds - self._answer_seconds)
        self.queue.release()
        self._start_idle_timer()

    def _retry_after(self) -> int:
        ahead = self.queue.busy + self.queue.waiting
        return max(1, round(self._answer_seconds * max(1, ahead) / self.queue.slots))

    # ----------------------------------------------------------------------------------- idle unload

    def _start_idle_timer(self) -> None:
        seconds = self.options.idle_unload_seconds
        with self._state:
            if not seconds or self._active or self._closed or self.borrowed:
                return
            self._cancel_idle_timer()
            self._idle_timer = threading.Timer(seconds, self._unload_if_idle)
            self._idle_timer.daemon = True
            self._idle_timer.start()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _unload_if_idle(self) -> None:
        with self._load_lock:
            with self._state:
                if self._active or self._current is None:
                    return
                model, self._current = self._current, None
            log.info("unloading %s after %.0f s idle", model.id, self.options.idle_unload_seconds or 0)
            self.engine.unload()

    # ----------------------------------------------------------------------------------- state

    @property
    def current(self) -> ServedModel | None:
        current, loaded = self._current, self.engine.loaded
        if self.borrowed and (loaded is None or current is None or Path(loaded.model_path) != current.path):
            return None                       # the window changed models since the last request
        return current

    def status(self) -> dict:
        loaded, current = self.engine.loaded, self.current
        return {"model": current.id if current else None,
                "context": loaded.n_ctx if loaded else None,
                "answering": self.queue.busy, "waiting": self.queue.waiting, "slots": self.queue.slots}

    def close(self) -> None:
        """Stop answering and end the engine worker. Blocking."""
        with self._state:
            self._closed = True
            self._cancel_idle_timer()
        if not self.borrowed:
            self.engine.close()
        self._current = None

    # ----------------------------------------------------------------------------------- helpers

    def _folders(self) -> tuple[Path, ...]:
        try:
            saved = tuple(Path(f).expanduser() for f in settings_store.load().model_folders)
        except Exception:  # noqa: BLE001 - broken settings must not hide the library
            saved = ()
        return saved + self.options.folders

    def _conditions(self, fresh: bool = False) -> FitConditions:
        saved = settings_store.load()
        return FitConditions(self._snapshot(fresh), choice_from_settings(saved, self.options.context),
                             saved.safety_margin_bytes)

    def _snapshot(self, fresh: bool) -> hardware.HardwareSnapshot:
        cached = self._hardware
        if fresh or cached is None or time.monotonic() - cached[0] > CATALOG_SECONDS:
            cached = (time.monotonic(), self._probe())
            self._hardware = cached
        return cached[1]


def _served(name: str, path: Path, size: int, source: str, info, error: str | None,
            conditions: FitConditions) -> ServedModel:
    ref = FileRef(path.name, local_path=path, local_info=info, local_error=error)
    fit = check_file(ref, conditions)
    model_id = name.removesuffix(".gguf")
    try:
        created = int(path.stat().st_mtime)
    except OSError:
        created = 0
    return ServedModel(model_id, path, size, source, created, fit, library.is_embedding_model(fit.info))
