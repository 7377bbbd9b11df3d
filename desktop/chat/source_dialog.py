"""A source under an answer, opened: the part of the document the model read, with the file's name and page."""
from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout

from core.chat.attachments.attachment import Source


class SourceDialog(QDialog):
    def __init__(self, source: Source, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Source — {source.label}")
        self.setObjectName("sourceDialog")
        where = ("the whole document" if source.position < 0 else
                 f"page {source.page}" if source.page else f"part {source.position + 1}")
        self.heading = QLabel(f"<b>{source.name}</b> — {where}")
        self.text = QPlainTextEdit(source.text)
        self.text.setReadOnly(True)
        self.text.setAccessibleName("The source's text")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self.resize(640, 480)
