"""The model folders the library scans besides its own: a list with Add… and Remove."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QListWidget, QPushButton, QVBoxLayout, QWidget


class FolderList(QWidget):
    changed = Signal()

    def __init__(self, folders: tuple[str, ...] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setAccessibleName("Model folders")
        self.list.setMinimumHeight(80)
        self.list.setMaximumHeight(120)
        self.add_button = QPushButton("&Add folder…")
        self.add_button.setAccessibleName("Add a model folder")
        self.remove_button = QPushButton("Re&move")
        self.remove_button.setAccessibleName("Remove the selected model folder")
        self._lay_out()
        self.add_button.clicked.connect(self._choose_folder)
        self.remove_button.clicked.connect(self.remove_selected)
        self.list.currentRowChanged.connect(self._update_buttons)
        for folder in folders:
            self.add_folder(folder)
        self._update_buttons()

    def _lay_out(self) -> None:
        buttons = QVBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

    def folders(self) -> tuple[str, ...]:
        return tuple(self.list.item(row).text() for row in range(self.list.count()))

    def add_folder(self, path: str) -> None:
        if path and path not in self.folders():
            self.list.addItem(path)
            self.list.setCurrentRow(self.list.count() - 1)
            self.changed.emit()

    def remove_selected(self) -> None:
        row = self.list.currentRow()
        if row >= 0:
            self.list.takeItem(row)
            self.changed.emit()
        self._update_buttons()

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a model folder")
        self.add_folder(path)

    def _update_buttons(self, *_args) -> None:
        self.remove_button.setEnabled(self.list.currentRow() >= 0)
