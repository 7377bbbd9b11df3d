"""The Server panel: switch the local API on and off, see and copy its URL, choose the port, open it to the LAN
(which needs a key, made for you), and watch its requests with their speed."""
from __future__ import annotations

import secrets

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QCheckBox, QDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from core.server.config import DEFAULT_PORT, ServerConfig
from core.server.request_log import RequestRecord
from desktop.server.server_control import ServerControl

LAN_HOST = "0.0.0.0"
LOOPBACK_HOST = "127.0.0.1"
LAN_WARNING = ("Other computers on your network can reach the server and use this computer's memory and "
               "processor: only clients that send the key are answered.")
MAX_LOG_LINES = 500


class ServerPanel(QDialog):
    answering_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None, control: ServerControl | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Local API server")
        self.control = control or ServerControl(self)
        self.switch = QCheckBox("Answer OpenAI-compatible requests")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(DEFAULT_PORT)
        self.lan = QCheckBox("Open to other computers on this network")
        self.warning = QLabel(LAN_WARNING)
        self.warning.setWordWrap(True)
        self.warning.setObjectName("lanWarning")
        self.key = QLineEdit()
        self.key.setPlaceholderText("none (this computer only)")
        self.url = QLineEdit()
        self.url.setReadOnly(True)
        self.url.setPlaceholderText("off")
        self.copy = QPushButton("Copy")
        self.status = QLabel("The server is off.")
        self.status.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(MAX_LOG_LINES)
        self._lay_out()
        self._connect()
        self._show_lan(False)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow(self.switch)
        form.addRow("Port", self.port)
        form.addRow(self.lan)
        form.addRow(self.warning)
        form.addRow("API key", self.key)
        url_row = QHBoxLayout()
        url_row.addWidget(self.url, 1)
        url_row.addWidget(self.copy)
        form.addRow("URL", url_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Requests"))
        layout.addWidget(self.log, 1)

    def _connect(self) -> None:
        self.switch.toggled.connect(self._switched)
        self.lan.toggled.connect(self._show_lan)
        self.copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.url.text()))
        self.control.started.connect(self._started)
        self.control.stopped.connect(self._stopped)
        self.control.failed.connect(self._failed)
        self.control.request_recorded.connect(self._record)
        self.control.answering_changed.connect(self.answering_changed)
        app = QGuiApplication.instance()
        if app is not None:                # the app's exit ends the server and its engine worker
            app.aboutToQuit.connect(self.control.stop_and_wait)

    # ------------------------------------------------------------------------------------------------

    def config(self) -> ServerConfig:
        key = self.key.text().strip() or None
        return ServerConfig(host=LAN_HOST if self.lan.isChecked() else LOOPBACK_HOST, port=self.port.value(),
                            api_key=key)

    def _show_lan(self, on: bool) -> None:
        self.warning.setVisible(on)
        if on and not self.key.text().strip():
            self.key.setText(secrets.token_urlsafe(24))     # the LAN needs a key: one is made, the user may change it

    def _switched(self, on: bool) -> None:
        for setting in (self.port, self.lan, self.key):
            setting.setEnabled(not on)
        if on:
            self.status.setText("Starting…")
            self.control.start(self.config())
        else:
            self.status.setText("Stopping…")
            self.control.stop()

    def _started(self, url: str) -> None:
        shown = url.replace(LAN_HOST, "this computer's address") if self.lan.isChecked() else url
        self.url.setText(url + "/v1")
        how = ("It answers with the model open in this window." if self.control.engine is not None
               else "Models load on demand by name.")
        self.status.setText(f"Listening on {shown}. {how}")

    def _stopped(self) -> None:
        self.url.clear()
        self.status.setText("The server is off.")

    def _failed(self, sentence: str) -> None:
        self.switch.blockSignals(True)
        self.switch.setChecked(False)
        self.switch.blockSignals(False)
        for setting in (self.port, self.lan, self.key):
            setting.setEnabled(True)
        self.url.clear()
        self.status.setText(sentence)

    def _record(self, record: RequestRecord) -> None:
        if record.answering:
            return
        figures = (f"{record.prompt_tokens}+{record.completion_tokens} tokens, {record.tokens_per_second:.1f} tok/s, "
                   f"{record.seconds:.2f} s")
        note = f" — {record.note}" if record.note else ""
        self.log.appendPlainText(f"{record.endpoint}  {record.model}  {record.status}  {figures}{note}")
