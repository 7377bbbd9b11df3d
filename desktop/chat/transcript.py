"""The conversation as the user reads it, with the answer streaming in at the end."""
from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser

_SPEAKERS = {"user": ("You", "#2f6fdb"), "assistant": ("Assistant", "#1f8a4c"), "notice": ("LlamaDesk", "#b5651d")}


class Transcript(QTextBrowser):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Conversation")
        self.setOpenExternalLinks(True)
        self.document().setDocumentMargin(14)
        self._body = QTextCharFormat()
        self._muted = QTextCharFormat()
        self._muted.setForeground(QColor("#7a7a7a"))
        small = self.font()
        small.setPointSizeF(max(small.pointSizeF() - 1.5, 7.0))
        self._muted.setFont(small)
        self._streaming = False

    def show_empty_hint(self, text: str) -> None:
        self.clear()
        self._write_block("notice", text)

    def add_message(self, role: str, text: str) -> None:
        self._write_block(role, text)

    def begin_answer(self) -> None:
        self._heading("assistant")
        self._streaming = True

    def append_answer(self, text: str) -> None:
        self._end_cursor().insertText(text, self._body)
        self._follow()

    def end_answer(self, footnote: str) -> None:
        self._streaming = False
        cursor = self._end_cursor()
        cursor.insertBlock()
        cursor.insertText(footnote, self._muted)
        self._follow()

    def answer_text(self) -> str:
        """The text shown so far, for tests and copying."""
        return self.toPlainText()

    def _write_block(self, role: str, text: str) -> None:
        self._heading(role)
        self._end_cursor().insertText(text, self._body)
        self._follow()

    def _heading(self, role: str) -> None:
        name, colour = _SPEAKERS[role]
        heading = QTextCharFormat()
        heading.setForeground(QColor(colour))
        heading.setFontWeight(QFont.Weight.Bold)
        cursor = self._end_cursor()
        if not self.document().isEmpty():
            cursor.insertBlock()
            cursor.insertBlock()
        cursor.insertText(name, heading)
        cursor.insertBlock()

    def _end_cursor(self) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        return cursor

    def _follow(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
