"""Turns core's EngineClient (blocking, plain Python) into Qt signals.

One serial background thread owns every blocking engine call (load, chat), like Anki's single
collection worker; Stop goes straight to the client, which is thread-safe for that one call.

An answer arrives as separate streams: its text (token_arrived), its thinking (reasoning_arrived) and the
tools it calls (tool_called); `model` is the model loaded last, whose ThinkingSupport says which thinking
controls a chat may offer.

use_remote(endpoint, model) chats through a RemoteClient instead (a model on another computer's
OpenAI-compatible server): the same signals, `loaded` with a LoadedModel whose backend is REMOTE_BACKEND and
which holds nothing here; `remote` names the endpoint while it is in use. A local load() leaves it.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal

from core.engine.client import EngineClient, EngineCrashed
from core.engine.remote_client import RemoteClient, RemoteModelGone
from core.engine.protocol import (AnswerFinished, ContextTrimmed, LoadedModel, LoadSettings, ReasoningText,
                                  SamplingSettings, ThinkingChoice, TokenText, ToolCallMade)
from core.settings import RemoteEndpoint
from desktop.tasks import Task

log = logging.getLogger(__name__)

REMOTE_BACKEND = "remote"


def remote_model(endpoint: RemoteEndpoint, model_id: str, context_length: int) -> LoadedModel:
    """What `loaded` carries for a remote model: its id and where it runs; no memory of this computer."""
    return LoadedModel(model_path=model_id, n_ctx=context_length, n_gpu_layers=0, n_layers=0,
                       backend=REMOTE_BACKEND, load_seconds=0.0, resident_bytes=0, resident_growth_bytes=0,
                       gpu_bytes=None, chat_template_source="remote", settings=LoadSettings(model_path=model_id),
                       description=f"{model_id} at {endpoint.host}")


def check_remote_model(client: RemoteClient) -> None:
    """The endpoint answers with this key and still serves the model; else its RemoteEngineError."""
    if client.model not in client.models():
        raise RemoteModelGone(f"{client.endpoint.label} no longer serves the model '{client.model}': "
                              "pick another of its models.")


class EngineSession(QObject):
    load_started = Signal(str)            # model path
    load_progressed = Signal(float)       # 0..1
    loaded = Signal(object)               # LoadedModel
    load_failed = Signal(str)             # a sentence for the user
    answer_started = Signal()
    token_arrived = Signal(str)
    reasoning_arrived = Signal(str)       # thinking text, shown apart from the answer
    tool_called = Signal(object)          # core.engine.protocol.ToolCall
    context_trimmed = Signal(int)         # messages dropped from the start of the conversation
    answer_finished = Signal(object)      # AnswerFinished
    answer_failed = Signal(str, str)      # sentence, partial text kept
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._client = EngineClient()
        self._busy = False
        self._last_settings: LoadSettings | None = None
        self._model: LoadedModel | None = None
        self._remote: RemoteClient | None = None

    @property
    def engine(self) -> EngineClient:
        """The local engine, for the API server to answer with the same loaded model (it never loads in it)."""
        return self._client

    @property
    def engine_pid(self) -> int | None:
        return self._client.pid if self._remote is None else None

    @property
    def remote(self) -> RemoteEndpoint | None:
        """The endpoint whose model answers, while a remote model is in use."""
        return self._remote.endpoint if self._remote is not None else None

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def last_settings(self) -> LoadSettings | None:
        return self._last_settings

    @property
    def model(self) -> LoadedModel | None:
        """The model loaded and ready; None before the first load, while loading and after a failed load."""
        return self._model

    def load(self, settings: LoadSettings) -> None:
        self._remote = None
        self._last_settings = settings
        self._model = None
        self._set_busy(True)
        self.load_started.emit(settings.model_path)
        # Emitting from the serial thread is safe: Qt queues the signal to receivers on the UI thread.
        (Task(self._client.load, settings, on_progress=self.load_progressed.emit)
         .success(self._on_loaded)
         .failure(self._on_load_failure)
         .run_in_background(serial=True))

    def use_remote(self, endpoint: RemoteEndpoint, model_id: str, context_length: int = 4096) -> None:
        """Answer through `model_id` on `endpoint` from now on (checked off the UI thread first);
        `context_length` is what the chat assumes the remote model takes (the server's is not published)."""
        client = RemoteClient(endpoint, model_id)
        previous, self._model = self._model, None
        self._set_busy(True)
        self.load_started.emit(model_id)
        (Task(self._switch_to_remote, client)
         .success(lambda _none: self._remote_ready(client, context_length))
         .failure(lambda error: self._remote_refused(error, previous))
         .run_in_background(serial=True))

    def ask(self, messages: list[dict], sampling: SamplingSettings,
            thinking: ThinkingChoice = ThinkingChoice()) -> None:
        self._set_busy(True)
        self.answer_started.emit()
        (Task(self._stream_answer, messages, sampling, thinking)
         .progress(self._on_answer_event)
         .success(lambda _: self._set_busy(False))
         .failure(self._on_answer_failure)
         .run_in_background(serial=True))

    def prepare(self, messages: list[dict], thinking: ThinkingChoice = ThinkingChoice()) -> None:
        """Say which conversation comes next (EngineClient.prepare), off the UI thread: a pipe write can wait
        while the engine is mid-decode. Only for a local model that is loaded and idle."""
        if self._remote is not None or self._model is None or self._busy:
            return
        Task(self._client.prepare, messages, thinking=thinking).run_in_background()

    def stop(self) -> None:
        (self._remote or self._client).stop()

    def engine_alive(self) -> bool:
        """False when the local engine process died; a remote model has no process here to lose."""
        return self._remote is not None or self._client.is_alive()

    def shutdown(self) -> None:
        if self._remote is not None:
            self._remote.stop()
        self._client.stop()
        self._client.close()

    # --- background side (serial thread) ---

    def _switch_to_remote(self, client: RemoteClient) -> None:
        """The local model is freed only once the remote one is known to answer: a refusal keeps it."""
        check_remote_model(client)
        self._client.unload()

    def _stream_answer(self, messages: list[dict], sampling: SamplingSettings, thinking: ThinkingChoice):
        yield from (self._remote or self._client).chat(messages, sampling, thinking=thinking)

    # --- UI side ---

    def _on_loaded(self, loaded: LoadedModel) -> None:
        self._model = loaded
        self._set_busy(False)
        self.loaded.emit(loaded)

    def _remote_ready(self, client: RemoteClient, context_length: int) -> None:
        self._remote = client
        self._last_settings = None  # nothing local to reload
        self._on_loaded(remote_model(client.endpoint, client.model, context_length))

    def _remote_refused(self, error: BaseException, previous: LoadedModel | None) -> None:
        """The sentence, then the model that was in use before is back (nothing was unloaded)."""
        self._on_load_failure(error)
        if previous is not None:
            self._model = previous
            self.loaded.emit(previous)

    def _on_load_failure(self, error: BaseException) -> None:
        self._set_busy(False)
        self.load_failed.emit(_sentence(error))

    def _on_answer_event(self, event) -> None:
        if isinstance(event, TokenText):
            self.token_arrived.emit(event.text)
        elif isinstance(event, ReasoningText):
            self.reasoning_arrived.emit(event.text)
        elif isinstance(event, ToolCallMade):
            self.tool_called.emit(event.call)
        elif isinstance(event, ContextTrimmed):
            self.context_trimmed.emit(event.dropped_messages)
        elif isinstance(event, AnswerFinished):
            self.answer_finished.emit(event)

    def _on_answer_failure(self, error: BaseException) -> None:
        self._set_busy(False)
        partial = error.partial_text if isinstance(error, EngineCrashed) else ""
        self.answer_failed.emit(_sentence(error), partial)

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)


def _sentence(error: BaseException) -> str:
    text = str(error).strip()
    return text if text else f"{type(error).__name__} (no details)"

