"""A dismissible line above the chat that says what went wrong (or right), without a modal dialog."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget


class NoticeBar(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeBar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # let the stylesheet paint it
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Notice")
        close = QToolButton()
        close.setText("✕")
        close.setAccessibleName("Dismiss notice")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.message, 1)
        layout.addWidget(close)
        self.hide()

    def show_error(self, text: str) -> None:
        self._show(text, "error")

    def show_info(self, text: str) -> None:
        self._show(text, "info")

    def text(self) -> str:
        return self.message.text() if self.isVisible() else ""

    def _show(self, text: str, level: str) -> None:
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.message.setText(text)
        self.show()
