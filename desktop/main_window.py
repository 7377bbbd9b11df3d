"""The main window: model bar, notices, the chat workspace, the memory dashboard and the memory strip.

The window owns the model's life (open, plan, load, reload after a crash); the chat workspace owns
conversations and answers; the dashboard only shows what the sampler measures.
"""
from __future__ import annotations

import base64
import gc
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QDialog, QLabel, QMainWindow, QSplitter, QVBoxLayout, QWidget

from core.machine import bandwidth, hardware
from core.models import starter
from core.models.projectors import projector_path_for_load
from core import settings as settings_store
from core.fit import calibration
from core.fit.load_preparation import PreparedLoad, prepare_load
from core.fit.planner import Plan
from core.fit.choice import choice_from_settings, settings_with_choice
from core.settings import RemoteEndpoint, Settings
from core.chat.store import ChatStore
from desktop.chat.workspace import ChatWorkspace
from desktop.engine_session import REMOTE_BACKEND, EngineSession
from desktop.models.model_bar import ModelBar, remote_title
from desktop.models.offload_panel import OffloadDialog
from desktop.models.picker.picker import ModelPicker
from desktop.monitor.dashboard import MemoryDashboard
from desktop.monitor.memory_strip import MemoryStrip
from desktop.monitor.sampler import MemorySampler
from desktop.widgets.notice_bar import NoticeBar
from desktop.settings.settings_dialog import SettingsDialog
from desktop.tasks import Task, wait_for_serial_tasks

SHUTDOWN_WAIT_MS = 2000
# When start-up has settled (the chat's code highlighter warms up 4 s after it appears), the ~100,000 objects made
# so far (modules, classes, Qt wrappers) live as long as the app: frozen, Python's full garbage collections stop
# walking them. Each such walk took 50 ms on the UI thread (100 ms on a busy machine): a hitch in a streaming answer.
START_UP_SETTLED_MS = 6000


class MainWindow(QMainWindow):
    model_open_failed = Signal(str)  # the sentence shown to the user when a model cannot be opened or loaded
    chat_ready = Signal()            # the chat workspace is in place (its store opened off the UI thread)

    def __init__(self, settings: Settings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("LlamaDesk")
        self.resize(1240, 800)
        self.settings = settings
        self.session = EngineSession(self)
        self.model_bar = ModelBar()
        self.notice = NoticeBar()
        self.crash_notice = NoticeBar()  # its own line: a model's notices must not replace the question
        self.chat: ChatWorkspace | None = None
        self.store: ChatStore | None = None
        self.memory = MemoryStrip()
        self.dashboard = MemoryDashboard()
        self.dashboard.setAccessibleName("Memory dashboard")
        self.sampler = MemorySampler(lambda: self.session.engine_pid, parent=self)
        self._prepared: PreparedLoad | None = None
        self._running_plan: Plan | None = None  # the plan the loaded model runs as: its answers' speeds calibrate it
        self.picker: ModelPicker | None = None  # made on first use: it owns header cache, downloads, workers
        self._picker_dialog: QDialog | None = None
        self._remote_pending: RemoteEndpoint | None = None  # the endpoint whose model is being checked
        self._model_title = ""
        self._lay_out()
        self._connect()
        self._add_shortcuts()
        self.model_bar.set_recent_models(settings.recent_models)
        self._restore_geometry()
        self.sampler.start()
        self._open_chat_store()
        # Once per machine (then cached): plans on the host need its memory bandwidth for a predicted speed. Not
        # during start-up: the measurement keeps every core busy for a moment.
        QTimer.singleShot(START_UP_SETTLED_MS, self, self._measure_bandwidth)

    def _measure_bandwidth(self) -> None:
        Task(bandwidth.host_bandwidth, parent=self).run_in_background()

    def _lay_out(self) -> None:
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.model_bar)
        layout.addWidget(self.notice)
        layout.addWidget(self.crash_notice)
        self._chat_placeholder = QLabel("Opening your chats…")
        self._chat_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self._chat_placeholder)
        self.splitter.addWidget(self.dashboard)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([860, 380])
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.memory)
        self.setCentralWidget(central)

    def _connect(self) -> None:
        self.model_bar.open_requested.connect(self.open_model)
        self.model_bar.offload_requested.connect(self.show_offload_dialog)
        self.model_bar.settings_requested.connect(self.show_settings_dialog)
        self.model_bar.models_requested.connect(self.show_model_picker)
        session = self.session
        session.load_started.connect(self._load_started)
        session.load_progressed.connect(self.model_bar.set_progress)
        session.loaded.connect(self._model_loaded)
        session.load_failed.connect(self._model_load_failed)
        session.answer_finished.connect(lambda finished: self.memory.show_speed(finished.stats.tokens_per_second,
                                                                                finished.stats.completion_tokens))
        session.answer_finished.connect(self._record_answer_speed)
        session.answer_failed.connect(self._engine_failed)
        session.busy_changed.connect(self.model_bar.set_enabled_for_busy)
        self.sampler.sampled.connect(self.memory.show_sample)
        self.sampler.sampled.connect(self.dashboard.show_sample)

    def _add_shortcuts(self) -> None:
        open_model = QAction("Open model…", self)
        open_model.setShortcut(QKeySequence.StandardKey.Open)
        open_model.triggered.connect(self.model_bar.open_button.click)
        preferences = QAction("Settings…", self)
        preferences.setShortcut(QKeySequence.StandardKey.Preferences)
        preferences.triggered.connect(self.show_settings_dialog)
        models = QAction("Models…", self)
        models.setShortcut(QKeySequence("Ctrl+K"))
        models.triggered.connect(self.show_model_picker)
        dashboard = QAction("Show the memory dashboard", self)
        dashboard.setShortcut(QKeySequence("Ctrl+M"))
        dashboard.triggered.connect(lambda: self.dashboard.setVisible(not self.dashboard.isVisible()))
        self.addActions([open_model, preferences, models, dashboard])
        server = QAction("Local API server…", self)
        server.setShortcut(QKeySequence("Ctrl+Shift+A"))
        server.triggered.connect(self.show_server_panel)
        self.addAction(server)

    # --- start-up ---

    def _open_chat_store(self) -> None:
        (Task(ChatStore)
         .success(self._chat_store_opened)
         .failure(lambda error: self._chat_placeholder.setText(f"Your chats could not be opened: {error}"))
         .run_in_background())

    def _chat_store_opened(self, store: ChatStore) -> None:
        self.store = store
        self.chat = ChatWorkspace(self.session, store)
        self.chat.notice.connect(self._show_notice)
        self.chat.context_raise_requested.connect(self._reload_with_context)
        self.splitter.replaceWidget(0, self.chat)
        self._chat_placeholder.deleteLater()
        self._restore_workspace_state()
        self.chat.set_model_ready(bool(self._model_title) and not self.session.busy, self._model_title)
        if store.recovered:
            self.notice.show_error(store.recovered)
        elif store.interrupted_answers:
            self.notice.show_info(f"{store.interrupted_answers} answer(s) were cut off when LlamaDesk last "
                                  "stopped; their text is kept and marked as interrupted.")
        gc.freeze()  # what start-up made so far, at once; what the first seconds add (lexers), when they settle
        QTimer.singleShot(START_UP_SETTLED_MS, self, gc.freeze)  # not after this window is gone
        self.chat_ready.emit()

    def open_initial_model(self) -> None:
        """Reopen the last model used, else the starter model; with no model at all, open the picker on
        the recommended models that fit this machine."""
        (Task(starter.model_to_open_at_start, self.settings.recent_models)
         .success(lambda path: self.open_model(str(path)) if path else self.show_model_picker(first_run=True))
         .run_in_background())

    # --- the model picker ---

    def show_model_picker(self, first_run: bool = False) -> None:
        if self._picker_dialog is None:
            self._picker_dialog = self._make_picker_dialog()
        if first_run:
            self.picker.open_on_first_run()
        self._picker_dialog.show()
        self._picker_dialog.raise_()
        self._picker_dialog.activateWindow()

    def _make_picker_dialog(self) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle("Models — LlamaDesk")
        dialog.setAccessibleName("Models")
        dialog.resize(1180, 760)
        self.picker = ModelPicker(self.settings, parent=dialog)
        layout = QVBoxLayout(dialog)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.picker)
        self.picker.load_requested.connect(lambda path: (dialog.hide(), self.open_model(path)))
        self.picker.remote_model_chosen.connect(lambda endpoint, model: (dialog.hide(),
                                                                         self.use_remote(endpoint, model)))
        self.picker.notice.connect(self._show_notice)
        return dialog

    # --- models ---

    def open_model(self, path: str) -> None:
        if self.session.busy:
            self.notice.show_info("Please wait: the model is busy. Stop the answer first to switch models.")
            return
        self.notice.hide()
        (Task(_prepare_with_settings, path, self.settings)
         .success(self._load_prepared)
         .failure(lambda error: self._model_rejected(path, error))
         .run_in_background())

    def use_remote(self, endpoint: RemoteEndpoint, model_id: str) -> None:
        """Chat through `model_id` served at `endpoint` (another computer's OpenAI-compatible server)."""
        if self.session.busy:
            self.notice.show_info("Please wait: the model is busy. Stop the answer first to switch models.")
            return
        self.notice.hide()
        self._prepared = None
        self._remote_pending = endpoint
        self.session.use_remote(endpoint, model_id, self.settings.context_length)

    def _reload_with_context(self, context: int) -> None:
        """The chat asked for a larger context (an attachment needs it): the same model again with it, for now."""
        if self._prepared is None or self.session.busy:
            return
        path = self._prepared.settings.model_path
        (Task(_prepare_with_settings, path, replace(self.settings, context_length=context), parent=self)
         .success(self._load_prepared)
         .failure(lambda error: self._model_rejected(path, error))
         .run_in_background())

    def _load_prepared(self, prepared: PreparedLoad) -> None:
        self._prepared = prepared
        self.session.load(prepared.settings)

    def _load_started(self, path: str) -> None:
        self._set_model_ready(False)
        endpoint, self._remote_pending = self._remote_pending, None
        self.model_bar.show_loading(path, remote_title(path, endpoint.host) if endpoint else "")

    def _model_rejected(self, path: str, error: BaseException) -> None:
        self.notice.show_error(f"Could not open {Path(path).name}: {error}")
        self.model_open_failed.emit(self.notice.text())
        if path in self.settings.recent_models:
            self._store(self.settings.without_recent_model(path))

    def _model_loaded(self, loaded) -> None:
        remote = self.session.remote if loaded.backend == REMOTE_BACKEND else None
        self.dashboard.show_remote(remote.host if remote else None)
        if remote is not None:
            self._remote_loaded(loaded, remote)
            return
        self.dashboard.show_loaded_model(loaded)
        prepared = self._prepared
        # A load that stepped down (fewer layers, a smaller context) does not run as planned: its speed says
        # nothing about the plan's prediction.
        planned = prepared is not None and prepared.settings.model_path == loaded.model_path and not loaded.steps
        self._running_plan = prepared.plan if planned else None
        title = Path(loaded.model_path).stem
        details = [loaded.backend, f"{loaded.n_gpu_layers} of {loaded.n_layers} layers on GPU",
                   f"{loaded.n_ctx:,} context", f"loaded in {loaded.load_seconds:.1f} s"]
        self.model_bar.show_loaded(title, details)
        for step in loaded.steps:
            self.notice.show_info(step)
        self._store(self.settings.with_recent_model(loaded.model_path))
        self._model_title = title
        self._set_model_ready(True)
        if self.chat is not None:
            self.chat.focus_composer()

    def _remote_loaded(self, loaded, endpoint: RemoteEndpoint) -> None:
        self._running_plan = None  # its speed says nothing about this machine's plans
        self.model_bar.show_remote(loaded.model_path, endpoint.host, ["Remote engine", endpoint.label])
        self._model_title = loaded.model_path
        self._set_model_ready(True)
        if self.chat is not None:
            self.chat.focus_composer()

    def _model_load_failed(self, sentence: str) -> None:
        self._model_title = ""
        self._running_plan = None
        self.model_bar.show_unloaded("Open a model to start chatting")
        self.notice.show_error(f"The model could not be loaded: {sentence}")
        self.model_open_failed.emit(self.notice.text())
        self._set_model_ready(False)

    def _engine_failed(self, sentence: str, _partial: str) -> None:
        """The chat keeps the partial answer (the workspace says so); the window brings the model back."""
        if not self.session.engine_alive():
            self._set_model_ready(False)
            if self.session.last_settings:
                self.notice.show_error(f"The engine stopped unexpectedly ({sentence}). Your chat is kept; "
                                       "reloading the model…")
                self.session.load(self.session.last_settings)

    def _record_answer_speed(self, finished) -> None:
        """This machine's speed history learns from every answer, so the next plans predict what it really does."""
        plan = self._running_plan
        if plan is not None:
            Task(calibration.record_answer_speed, plan.placement_devices, plan.uncalibrated_tokens_per_second,
                 finished.stats, parent=self).run_in_background()

    def _set_model_ready(self, ready: bool) -> None:
        if self.chat is not None:
            self.chat.set_model_ready(ready, self._model_title)

    def _show_notice(self, level: str, sentence: str) -> None:
        (self.notice.show_error if level == "error" else self.notice.show_info)(sentence)

    # --- offload and settings ---

    def show_offload_dialog(self) -> None:
        prepared = self._prepared
        if prepared is None:
            return
        dialog = OffloadDialog(self)
        dialog.apply_requested.connect(self._offload_chosen)
        choice = choice_from_settings(self.settings, prepared.settings.n_ctx)
        (Task(_machine_and_margin, self.settings)
         .success(lambda found: dialog.show_for(prepared.info, found[0], choice, found[1]))
         .failure(lambda error: self.notice.show_error(f"Could not read this machine's memory: {error}"))
         .run_in_background())

    def _offload_chosen(self, choice) -> None:
        self._store(settings_with_choice(self.settings, choice))
        if self._prepared is not None:
            self.open_model(self._prepared.settings.model_path)

    def show_server_panel(self) -> None:
        from desktop.server.server_control import ServerControl
        from desktop.server.server_panel import ServerPanel

        if getattr(self, "server_panel", None) is None:
            self.server_panel = ServerPanel(self, ServerControl(self, engine=self.session.engine))
            self.server_panel.answering_changed.connect(
                lambda answering: answering and self._show_notice("info", "The local API server is answering."))
        self.server_panel.show()
        self.server_panel.raise_()

    def show_settings_dialog(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        dialog.settings_changed.connect(self._settings_saved)
        dialog.open()

    def _settings_saved(self, new_settings: Settings) -> None:
        self.settings = new_settings  # the dialog has saved them already
        self.model_bar.set_recent_models(new_settings.recent_models)
        if self.picker is not None:
            self.picker.set_settings(new_settings)

    def _store(self, new_settings: Settings) -> None:
        self.settings = new_settings
        self.model_bar.set_recent_models(new_settings.recent_models)
        Task(settings_store.save, new_settings).run_in_background()

    # --- window state ---

    def _restore_geometry(self) -> None:
        state = self.settings.window_state
        if state.get("geometry"):
            self.restoreGeometry(_decode(state["geometry"]))
        if state.get("splitter"):
            self.splitter.restoreState(_decode(state["splitter"]))
        if state.get("dashboard_hidden"):
            self.dashboard.hide()

    def _restore_workspace_state(self) -> None:
        saved = self.settings.window_state.get("chat")
        if saved and self.chat is not None:
            self.chat.restore_state(_decode(saved))

    def _window_state(self) -> dict[str, object]:
        state: dict[str, object] = {
            "geometry": _encode(self.saveGeometry()),
            "splitter": _encode(self.splitter.saveState()),
            "dashboard_hidden": not self.dashboard.isVisible(),
        }
        if self.chat is not None:
            state["chat"] = _encode(self.chat.save_state())
        return state

    def closeEvent(self, event: QCloseEvent) -> None:
        self.sampler.stop()
        if self.picker is not None:
            self.picker.shutdown()  # downloads pause and keep their bytes for the next start
        if self.chat is not None:
            self.chat.stop()
        if getattr(self, "server_panel", None) is not None:
            self.server_panel.control.stop_and_wait()   # it answers with this window's engine
        self.session.shutdown()
        settings = replace(self.settings, window_state=self._window_state())
        settings_store.save(settings)  # small and must land before the process ends
        QThreadPool.globalInstance().waitForDone(SHUTDOWN_WAIT_MS)
        wait_for_serial_tasks(SHUTDOWN_WAIT_MS)  # the chat store's own thread: its queued writes land first
        if self.store is not None:
            self.store.close()  # writes any answer text still buffered
        super().closeEvent(event)


def _margin(settings: Settings) -> int:
    """The GPU margin plans keep: the one this machine's loads taught when the settings let them (reads a file)."""
    return calibration.effective_margin_bytes(settings.safety_margin_bytes, settings.learned_margin)


def _prepare_with_settings(path: str, settings: Settings) -> PreparedLoad:
    """The load of `path` as the settings ask, with a vision model's projector found beside it."""
    return prepare_load(path, choice_from_settings(settings), threads=settings.threads or None,
                        safety_margin_bytes=_margin(settings), projector_path=projector_path_for_load(path))


def _machine_and_margin(settings: Settings) -> tuple[hardware.HardwareSnapshot, int]:
    return hardware.probe(), _margin(settings)


def _encode(data: QByteArray) -> str:
    return base64.b64encode(bytes(data.data())).decode("ascii")


def _decode(text: object) -> QByteArray:
    try:
        return QByteArray(base64.b64decode(str(text), validate=True))
    except ValueError:
        return QByteArray()
