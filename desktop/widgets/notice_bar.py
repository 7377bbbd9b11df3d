"""A dismissible line above the chat that says what went wrong (or right), or asks a question with a few
answers, in place of a dialog that would float over the chat."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget


@dataclass(frozen=True)
class NoticeAnswer:
    label: str
    chosen: Callable[[], None]


class NoticeBar(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeBar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # let the stylesheet paint it
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Notice")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.answer_buttons: list[QPushButton] = []
        self._dismissed: Callable[[], None] | None = None
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAccessibleName("Dismiss notice")
        self.close_button.clicked.connect(self._dismiss)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(10, 6, 6, 6)
        self._layout.addWidget(self.message, 1)
        self._layout.addWidget(self.close_button)
        self.hide()

    def show_error(self, text: str) -> None:
        self._show(text, "error")

    def show_info(self, text: str) -> None:
        self._show(text, "info")

    def ask(self, text: str, answers: list[NoticeAnswer], dismissed: Callable[[], None] | None = None,
            level: str = "info") -> None:
        """Show a question with one button per answer; an answer or the ✕ (`dismissed`) hides it."""
        self._show(text, level)
        self._dismissed = dismissed
        for answer in answers:
            button = QPushButton(answer.label)
            button.clicked.connect(lambda _checked=False, chosen=answer.chosen: self._answer(chosen))
            self._layout.insertWidget(self._layout.indexOf(self.close_button), button)
            self.answer_buttons.append(button)

    def text(self) -> str:
        return self.message.text() if self.isVisible() else ""

    def _show(self, text: str, level: str) -> None:
        self._clear_answers()
        self.setProperty("level", level)
        self.style().unpolish(self)
        self.style().polish(self)
        self.message.setText(text)
        self.show()

    def _answer(self, chosen: Callable[[], None]) -> None:
        self._dismissed = None
        self.hide()
        self._clear_answers()
        chosen()

    def _dismiss(self) -> None:
        dismissed, self._dismissed = self._dismissed, None
        self.hide()
        self._clear_answers()
        if dismissed is not None:
            dismissed()

    def _clear_answers(self) -> None:
        self._dismissed = None
        for button in self.answer_buttons:
            button.deleteLater()
        self.answer_buttons = []
