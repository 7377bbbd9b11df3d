"""The chat area: system prompt, transcript, message box, Send and Stop."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from desktop.chat.composer import Composer
from desktop.chat.transcript import Transcript


class ChatPanel(QWidget):
    send_requested = Signal(str)
    stop_requested = Signal()
    system_prompt_changed = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.system_prompt = QLineEdit()
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setPlaceholderText("How the assistant should behave (optional)")
        self.transcript = Transcript()
        self.composer = Composer()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("primary")
        self.send_button.setAccessibleName("Send message")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop the answer")
        self._lay_out()
        self.composer.submitted.connect(self._submit)
        self.send_button.clicked.connect(self._submit)
        self.stop_button.clicked.connect(self.stop_requested)
        self.system_prompt.editingFinished.connect(
            lambda: self.system_prompt_changed.emit(self.system_prompt.text()))
        self._ready = False
        self._generating = False
        self._refresh_buttons()

    def _lay_out(self) -> None:
        prompt_row = QHBoxLayout()
        label = QLabel("System prompt")
        label.setBuddy(self.system_prompt)
        prompt_row.addWidget(label)
        prompt_row.addWidget(self.system_prompt, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        compose_row = QHBoxLayout()
        compose_row.addWidget(self.composer, 1)
        compose_row.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(prompt_row)
        layout.addWidget(self.transcript, 1)
        layout.addLayout(compose_row)

    def set_ready(self, ready: bool) -> None:
        """A model is loaded and can take a message."""
        self._ready = ready
        self._refresh_buttons()

    def set_generating(self, generating: bool) -> None:
        self._generating = generating
        self._refresh_buttons()

    def _submit(self) -> None:
        text = self.composer.toPlainText().strip()
        if not text or not self._ready or self._generating:
            return
        self.composer.clear()
        self.send_requested.emit(text)

    def _refresh_buttons(self) -> None:
        self.send_button.setEnabled(self._ready and not self._generating)
        self.stop_button.setEnabled(self._generating)
