"""An image attached to a question, opened from its thumbnail: the whole picture, scaled to the screen, read off the
UI thread (a large photo takes longer than a frame to decode)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QScrollArea, QVBoxLayout

from desktop.chat.thumbnails import read_scaled
from desktop.tasks import Task

LARGEST = QSize(1600, 1200)


class ImageDialog(QDialog):
    def __init__(self, path: str, name: str, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("imageDialog")
        self.setWindowTitle(f"Image — {name}")
        self.picture = QLabel("Opening the image…")
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setAccessibleName(f"The attached image {name}")
        scroll = QScrollArea()
        scroll.setWidget(self.picture)
        scroll.setWidgetResizable(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)
        self.resize(800, 600)
        if not path or not Path(path).exists():
            self.picture.setText(f"{name} is no longer kept with this chat.")
            return
        Task(read_scaled, path, LARGEST, parent=self).success(self._show).run_in_background()

    def _show(self, image: QImage | None) -> None:
        if image is None:
            self.picture.setText("The image could not be read.")
            return
        self.picture.setPixmap(QPixmap.fromImage(image))
