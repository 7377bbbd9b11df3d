"""The message box: Enter sends, Shift+Enter starts a new line. Files dropped on it or pasted into it (and a
pasted picture) are attached instead of being written in as text."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QImage, QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit


class Composer(QPlainTextEdit):
    submitted = Signal()
    files_given = Signal(list)         # list[Path]: dropped or pasted files

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Message the model — Enter sends, Shift+Enter adds a line; drop or paste files to "
                                "attach them")
        self.setAccessibleName("Message")
        self.setTabChangesFocus(True)
        self.setFixedHeight(84)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        is_enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if is_enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    # Drops and pastes both arrive here in a QPlainTextEdit.
    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        return bool(local_files(source)) or source.hasImage() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        files = local_files(source)
        if not files and source.hasImage() and not source.hasText():
            files = [_save_pasted_picture(QImage(source.imageData()))]
        if files:
            self.files_given.emit(files)
            return
        super().insertFromMimeData(source)


def local_files(source: QMimeData) -> list[Path]:
    return [Path(url.toLocalFile()) for url in source.urls() if url.isLocalFile() and Path(url.toLocalFile()).is_file()]


def _save_pasted_picture(image: QImage) -> Path:
    """A picture pasted from the clipboard becomes a PNG file (the chat keeps its own copy once sent)."""
    folder = Path(tempfile.gettempdir()) / "llamadesk-pasted"
    folder.mkdir(exist_ok=True)
    path = folder / f"pasted-{time.strftime('%Y%m%d-%H%M%S')}.png"
    image.save(str(path), "PNG")
    return path
