"""The right side of the chat workspace: the chat's title, its thinking controls (where the model offers them)
and menu, its settings, the messages, the context bar and the message box with Send and Stop. It shows state and
reports intent."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QMenu, QPushButton, QSizePolicy, QToolButton,
                               QVBoxLayout, QWidget)

from desktop.chat.attachment_tray import AttachmentTray
from desktop.chat.chat_settings import ChatSettings
from desktop.chat.chat_view import ChatView
from desktop.chat.composer import Composer
from desktop.chat.context_bar import ContextBar
from desktop.chat.thinking_controls import ThinkingControls


class ConversationPane(QWidget):
    send_requested = Signal(str)
    stop_requested = Signal()
    export_requested = Signal(str)       # "markdown" | "json"
    import_requested = Signal()
    edit_cancelled = Signal()
    files_given = Signal(list)           # list[Path]: chosen with Attach, dropped or pasted

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("conversationPane")
        self.title = QLabel("New chat")
        self.title.setObjectName("chatTitle")
        self.title.setAccessibleName("Chat title")
        # A long title may be cut, but must never push the conversation list narrower.
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.thinking = ThinkingControls()
        self.settings_toggle = _tool_button("Settings", "Show the chat's system prompt and sampling settings")
        self.settings_toggle.setCheckable(True)
        self.files_button = _tool_button("Export ▾", "Export or import chats")
        self.files_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.files_button.setMenu(self._files_menu())
        self.settings = ChatSettings()
        self.settings.hide()
        self.view = ChatView()
        self.context_bar = ContextBar()
        self.edit_banner = QWidget(objectName="editBanner")
        self.edit_label = QLabel("Editing a message: Send keeps the original and starts a new branch.")
        self.cancel_edit_button = QPushButton("Cancel edit")
        self.cancel_edit_button.setAccessibleName("Cancel editing the message")
        self.tray = AttachmentTray()
        self.composer = Composer()
        self.attach_button = QPushButton("Attach…")
        self.attach_button.setAccessibleName("Attach files")
        self.attach_button.setToolTip("Attach documents (text, Markdown, code, PDF, Word, HTML) or images")
        self.send_button = QPushButton("Send", objectName="primary")
        self.send_button.setAccessibleName("Send message")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop the answer (Esc)")
        self._ready = False
        self._generating = False
        self._attachments_busy = False
        self._lay_out()
        self._connect()
        self._refresh_buttons()

    def _files_menu(self) -> QMenu:
        menu = QMenu(self)
        for text, slot in (("Export as Markdown…", lambda: self.export_requested.emit("markdown")),
                           ("Export as JSON…", lambda: self.export_requested.emit("json")),
                           ("Import JSON chat…", self.import_requested.emit)):
            action = QAction(text, menu)
            action.triggered.connect(slot)
            menu.addAction(action)
        return menu

    def _lay_out(self) -> None:
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.thinking)
        header.addWidget(self.settings_toggle)
        header.addWidget(self.files_button)
        banner = QHBoxLayout(self.edit_banner)
        banner.setContentsMargins(8, 4, 4, 4)
        banner.addWidget(self.edit_label, 1)
        banner.addWidget(self.cancel_edit_button)
        self.edit_banner.hide()
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.attach_button)
        buttons.addStretch(1)
        compose = QHBoxLayout()
        compose.addWidget(self.composer, 1)
        compose.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 10, 10, 10)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(self.settings)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.context_bar)
        layout.addWidget(self.edit_banner)
        layout.addWidget(self.tray)
        layout.addLayout(compose)

    def _connect(self) -> None:
        self.settings_toggle.toggled.connect(self.settings.setVisible)
        self.composer.submitted.connect(self._submit)
        self.send_button.clicked.connect(self._submit)
        self.stop_button.clicked.connect(self.stop_requested)
        self.cancel_edit_button.clicked.connect(self.edit_cancelled)
        self.attach_button.clicked.connect(self._choose_files)
        self.composer.files_given.connect(self.files_given)

    def focus_chain(self) -> list[QWidget]:
        """This pane's controls in Tab order."""
        fields = [self.settings.system_prompt, self.settings.preset, *self.settings.number_fields()]
        return [self.thinking.think, self.thinking.effort, self.settings_toggle, self.files_button, *fields, self.view, self.composer, self.send_button,
                self.stop_button, self.attach_button, self.cancel_edit_button]

    # --- state shown ---

    def set_ready(self, ready: bool) -> None:
        self._ready = ready
        self._refresh_buttons()

    def set_generating(self, generating: bool) -> None:
        self._generating = generating
        self._refresh_buttons()

    def set_attachments_busy(self, busy: bool) -> None:
        """Send waits while an attached document is still being read."""
        self._attachments_busy = busy
        self._refresh_buttons()

    def _choose_files(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Attach files", str(Path.home()),
                                                "Documents and images (*.txt *.md *.pdf *.docx *.html *.htm *.py *.js "
                                                "*.ts *.c *.cpp *.h *.java *.go *.rs *.json *.csv *.png *.jpg *.jpeg);;"
                                                "All files (*)")
        if names:
            self.files_given.emit([Path(name) for name in names])

    def show_editing(self, text: str | None) -> None:
        """Enter (text) or leave (None) edit-and-resend mode."""
        self.edit_banner.setVisible(text is not None)
        if text is not None:
            self.composer.setPlainText(text)
            self.composer.moveCursor(self.composer.textCursor().MoveOperation.End)
            self.composer.setFocus(Qt.FocusReason.OtherFocusReason)

    def _submit(self) -> None:
        text = self.composer.toPlainText().strip()
        if not text or not self._ready or self._generating or self._attachments_busy:
            return
        self.composer.clear()
        self.send_requested.emit(text)

    def _refresh_buttons(self) -> None:
        self.send_button.setEnabled(self._ready and not self._generating and not self._attachments_busy)
        self.stop_button.setEnabled(self._generating)


def _tool_button(text: str, accessible_name: str) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setAccessibleName(accessible_name)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    return button
