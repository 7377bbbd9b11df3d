"""The main window: model bar, notices, chat, and the live memory strip."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QMainWindow, QSplitter, QVBoxLayout, QWidget

from core import hardware, starter
from core import settings as settings_store
from core.chats import Conversation
from core.engine.protocol import AnswerFinished, SamplingSettings
from core.offload import PreparedLoad, prepare_load
from core.offload_choice import choice_from_settings, settings_with_choice
from core.settings import Settings
from desktop.chat.chat_panel import ChatPanel
from desktop.engine_session import EngineSession
from desktop.models.model_bar import ModelBar
from desktop.models.offload_panel import OffloadDialog
from desktop.monitor.dashboard import MemoryDashboard
from desktop.monitor.memory_strip import MemoryStrip
from desktop.monitor.sampler import MemorySampler
from desktop.notice_bar import NoticeBar
from desktop.settings.settings_dialog import SettingsDialog
from desktop.tasks import Task


class MainWindow(QMainWindow):
    model_open_failed = Signal(str)  # the sentence shown to the user when a model cannot be opened or loaded

    def __init__(self, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("LlamaDesk")
        self.resize(1100, 760)
        self.settings = settings
        self.conversation = Conversation(system_prompt=settings.system_prompt)
        self.sampling = SamplingSettings()
        self.session = EngineSession(self)
        self.model_bar = ModelBar()
        self.notice = NoticeBar()
        self.chat = ChatPanel()
        self.memory = MemoryStrip()
        self.dashboard = MemoryDashboard()
        self.dashboard.setAccessibleName("Memory dashboard")
        self.sampler = MemorySampler(lambda: self.session.engine_pid, parent=self)
        self._prepared: PreparedLoad | None = None
        self._lay_out()
        self._connect()
        self._add_shortcuts()
        self.chat.system_prompt.setText(settings.system_prompt)
        self.model_bar.set_recent_models(settings.recent_models)
        self.chat.transcript.show_empty_hint("Open a model to start chatting.")
        self.sampler.start()

    def _lay_out(self) -> None:
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.model_bar)
        layout.addWidget(self.notice)
        chat_area = QWidget()
        chat_layout = QVBoxLayout(chat_area)
        chat_layout.setContentsMargins(12, 10, 12, 10)
        chat_layout.addWidget(self.chat)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(chat_area)
        self.splitter.addWidget(self.dashboard)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([760, 380])
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.memory)
        self.setCentralWidget(central)

    def _connect(self) -> None:
        self.model_bar.open_requested.connect(self.open_model)
        self.model_bar.offload_requested.connect(self.show_offload_dialog)
        self.model_bar.settings_requested.connect(self.show_settings_dialog)
        self.chat.send_requested.connect(self.send_message)
        self.chat.stop_requested.connect(self.session.stop)
        self.chat.system_prompt_changed.connect(self._system_prompt_changed)
        session = self.session
        session.load_started.connect(self.model_bar.show_loading)
        session.load_progressed.connect(self.model_bar.set_progress)
        session.loaded.connect(self._model_loaded)
        session.load_failed.connect(self._model_load_failed)
        session.token_arrived.connect(self.chat.transcript.append_answer)
        session.context_trimmed.connect(self._context_trimmed)
        session.answer_finished.connect(self._answer_finished)
        session.answer_failed.connect(self._answer_failed)
        session.busy_changed.connect(self.model_bar.set_enabled_for_busy)
        session.loaded.connect(self.dashboard.show_loaded_model)
        self.sampler.sampled.connect(self.memory.show_sample)
        self.sampler.sampled.connect(self.dashboard.show_sample)

    def _add_shortcuts(self) -> None:
        stop = QAction("Stop the answer", self)
        stop.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        stop.triggered.connect(self.session.stop)
        open_model = QAction("Open model…", self)
        open_model.setShortcut(QKeySequence.StandardKey.Open)
        open_model.triggered.connect(self.model_bar.open_button.click)
        preferences = QAction("Settings…", self)
        preferences.setShortcut(QKeySequence.StandardKey.Preferences)
        preferences.triggered.connect(self.show_settings_dialog)
        dashboard = QAction("Show the memory dashboard", self)
        dashboard.setShortcut(QKeySequence("Ctrl+M"))
        dashboard.triggered.connect(lambda: self.dashboard.setVisible(not self.dashboard.isVisible()))
        self.addActions([stop, open_model, preferences, dashboard])

    # --- start-up ---

    def open_initial_model(self) -> None:
        """First start opens the starter model; later starts reopen the last model used."""
        (Task(starter.model_to_open_at_start, self.settings.recent_models)
         .success(lambda path: self.open_model(str(path)) if path else None)
         .run_in_background())

    # --- models ---

    def open_model(self, path: str) -> None:
        if self.session.busy:
            self.notice.show_info("Please wait: the model is busy. Stop the answer first to switch models.")
            return
        self.notice.hide()
        settings = self.settings
        (Task(prepare_load, path, choice_from_settings(settings), threads=settings.threads or None,
              safety_margin_bytes=settings.safety_margin_bytes)
         .success(self._load_prepared)
         .failure(lambda error: self._model_rejected(path, error))
         .run_in_background())

    def _load_prepared(self, prepared: PreparedLoad) -> None:
        self._prepared = prepared
        self.chat.set_ready(False)
        self.session.load(prepared.settings)

    def _model_rejected(self, path: str, error: BaseException) -> None:
        self.notice.show_error(f"Could not open {Path(path).name}: {error}")
        self.model_open_failed.emit(self.notice.text())
        if path in self.settings.recent_models:
            self._store(self.settings.without_recent_model(path))

    def _model_loaded(self, loaded) -> None:
        title = Path(loaded.model_path).stem
        details = (f"{loaded.backend} · {loaded.n_gpu_layers} of {loaded.n_layers} layers on GPU · "
                   f"{loaded.n_ctx:,} context · loaded in {loaded.load_seconds:.1f} s")
        self.model_bar.show_loaded(title, details)
        for step in loaded.steps:
            self.notice.show_info(step)
        self._store(self.settings.with_recent_model(loaded.model_path))
        self.chat.set_ready(True)
        if not self.conversation.messages:
            self.chat.transcript.show_empty_hint(f"{title} is ready. Ask it anything.")
        self.chat.composer.setFocus()

    def _model_load_failed(self, sentence: str) -> None:
        self.model_bar.show_unloaded("Open a model to start chatting")
        self.notice.show_error(f"The model could not be loaded: {sentence}")
        self.model_open_failed.emit(self.notice.text())
        self.chat.set_ready(False)

    # --- chat ---

    def send_message(self, text: str) -> None:
        if not self.conversation.messages:
            self.chat.transcript.clear()
        self.conversation.system_prompt = self.chat.system_prompt.text()
        self.conversation.add("user", text)
        self.chat.transcript.add_message("user", text)
        self.chat.transcript.begin_answer()
        self.chat.set_generating(True)
        self.session.ask(self.conversation.engine_messages(), self.sampling)

    def _answer_finished(self, finished: AnswerFinished) -> None:
        stats = finished.stats
        cancelled = stats.stop_reason == "cancelled"
        self.conversation.add("assistant", finished.text, stopped_early=cancelled)
        note = "Stopped · " if cancelled else ""
        self.chat.transcript.end_answer(
            f"{note}{stats.completion_tokens} tokens · {stats.tokens_per_second:.1f} tok/s · "
            f"first token {stats.ttft_seconds * 1000:.0f} ms · context {stats.context_used:,}/{stats.context_size:,}")
        self.memory.show_speed(stats.tokens_per_second)
        self.chat.set_generating(False)

    def _answer_failed(self, sentence: str, partial: str) -> None:
        self.conversation.add("assistant", partial, stopped_early=True)
        self.chat.transcript.end_answer("Interrupted: the engine stopped. The text above is kept.")
        self.chat.set_generating(False)
        self.chat.set_ready(False)
        self.notice.show_error(f"The engine stopped unexpectedly ({sentence}). Your chat is kept; "
                               "reloading the model…")
        if self.session.last_settings:
            self.session.load(self.session.last_settings)

    def _context_trimmed(self, dropped: int) -> None:
        self.notice.show_info(f"The conversation is longer than the model's context: the {dropped} oldest "
                              "message(s) were left out of this answer (the system prompt is kept).")

    # --- offload and settings ---

    def show_offload_dialog(self) -> None:
        prepared = self._prepared
        if prepared is None:
            return
        dialog = OffloadDialog(self)
        dialog.apply_requested.connect(self._offload_chosen)
        choice = choice_from_settings(self.settings, prepared.settings.n_ctx)
        margin = self.settings.safety_margin_bytes
        (Task(hardware.probe)
         .success(lambda snapshot: dialog.show_for(prepared.info, snapshot, choice, margin))
         .failure(lambda error: self.notice.show_error(f"Could not read this machine's memory: {error}"))
         .run_in_background())

    def _offload_chosen(self, choice) -> None:
        self._store(settings_with_choice(self.settings, choice))
        if self._prepared is not None:
            self.open_model(self._prepared.settings.model_path)

    def show_settings_dialog(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        dialog.settings_changed.connect(self._settings_saved)
        dialog.open()

    def _settings_saved(self, new_settings: Settings) -> None:
        self.settings = new_settings  # the dialog has saved them already
        self.model_bar.set_recent_models(new_settings.recent_models)


    def _system_prompt_changed(self, text: str) -> None:
        self._store(replace(self.settings, system_prompt=text))

    def _store(self, new_settings: Settings) -> None:
        self.settings = new_settings
        self.model_bar.set_recent_models(new_settings.recent_models)
        Task(settings_store.save, new_settings).run_in_background()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.sampler.stop()
        self.session.shutdown()
        super().closeEvent(event)
