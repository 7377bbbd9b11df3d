"""The GUI's handle on one running API server: starts core's server in a background thread, and turns the server's
request records into Qt signals. Given the window's engine, the server answers with the model the window has
loaded (one model in memory, shared); without one it has an engine of its own and loads models by name."""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from core.engine.client import EngineClient
from core.server.app import create_app
from core.server.config import ServerConfig
from core.server.model_host import HostOptions, ModelHost
from core.server.request_log import RequestRecord
from core.server.serving import Listening, ServerRunner
from desktop.tasks import Task


class ServerControl(QObject):
    started = Signal(str)                 # the URL it listens on
    stopped = Signal()
    failed = Signal(str)                  # a sentence
    request_recorded = Signal(object)     # RequestRecord, from the server's threads (queued to the UI thread)
    answering_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, engine: EngineClient | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self._runner: ServerRunner | None = None
        self._answering = 0
        self.request_recorded.connect(self._count)

    @property
    def running(self) -> bool:
        return self._runner is not None

    def start(self, config: ServerConfig, options: HostOptions = HostOptions()) -> None:
        """Start listening off the UI thread; `started` or `failed` follows."""
        if self._runner is not None:
            return
        try:
            config = config.checked()
        except ValueError as error:
            self.failed.emit(str(error))
            return
        host = ModelHost(options, engine=self.engine)
        runner = ServerRunner(create_app(config, host, observer=self.request_recorded.emit), config, host)
        self._runner = runner
        Task(runner.start, parent=self).success(self._listening).failure(self._not_listening).run_in_background()

    def stop(self) -> None:
        """Stop listening and end the server's engine, off the UI thread; `stopped` follows."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        Task(runner.stop, parent=self).success(lambda _: self._ended()).failure(lambda _: self._ended()) \
            .run_in_background()

    def stop_and_wait(self) -> None:
        """For the app's exit: stop now, on this thread."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()

    def _listening(self, listening: Listening) -> None:
        self.started.emit(listening.url)

    def _not_listening(self, error: BaseException) -> None:
        self._runner = None
        self.failed.emit(str(error))

    def _ended(self) -> None:
        self._answering = 0
        self.answering_changed.emit(False)
        self.stopped.emit()

    def _count(self, record: RequestRecord) -> None:
        before = self._answering
        self._answering = max(0, self._answering + (1 if record.answering else -1))
        if bool(before) != bool(self._answering):
            self.answering_changed.emit(bool(self._answering))
