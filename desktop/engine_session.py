"""Turns core's EngineClient (blocking, plain Python) into Qt signals.

One serial background thread owns every blocking engine call (load, chat), like Anki's single
collection worker; Stop goes straight to the client, which is thread-safe for that one call.

An answer arrives as separate streams: its text (token_arrived), its thinking (reasoning_arrived) and the
tools it calls (tool_called); `model` is the model loaded last, whose ThinkingSupport says which thinking
controls a chat may offer.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal

from core.engine.client import EngineClient, EngineCrashed
from core.engine.protocol import (AnswerFinished, ContextTrimmed, LoadedModel, LoadSettings, ReasoningText,
                                  SamplingSettings, ThinkingChoice, TokenText, ToolCallMade)
from desktop.tasks import Task

log = logging.getLogger(__name__)


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

    @property
    def engine_pid(self) -> int | None:
        return self._client.pid

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
        self._last_settings = settings
        self._model = None
        self._set_busy(True)
        self.load_started.emit(settings.model_path)
        # Emitting from the serial thread is safe: Qt queues the signal to receivers on the UI thread.
        (Task(self._client.load, settings, on_progress=self.load_progressed.emit)
         .success(self._on_loaded)
         .failure(self._on_load_failure)
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

    def stop(self) -> None:
        self._client.stop()

    def engine_alive(self) -> bool:
        return self._client.is_alive()

    def shutdown(self) -> None:
        self._client.stop()
        self._client.close()

    # --- background side (serial thread) ---

    def _stream_answer(self, messages: list[dict], sampling: SamplingSettings, thinking: ThinkingChoice):
        yield from self._client.chat(messages, sampling, thinking=thinking)

    # --- UI side ---

    def _on_loaded(self, loaded: LoadedModel) -> None:
        self._model = loaded
        self._set_busy(False)
        self.loaded.emit(loaded)

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

