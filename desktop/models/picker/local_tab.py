"""On this computer: the models already on disk (Hugging Face cache, LlamaDesk's folder, LM Studio, Ollama, the
user's folders), fit-checked, with Refresh and Delete (which asks first)."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton

from desktop.models.picker.file_list_tab import FileListTab
from desktop.models.picker.rows import PickerRow


class LocalTab(FileListTab):
    refresh_requested = Signal()
    delete_requested = Signal(object)   # PickerRow

    def __init__(self, parent=None) -> None:
        super().__init__("On this computer", parent)
        self.refresh_button = QPushButton("&Refresh")
        self.refresh_button.setAccessibleName("Look for models on this computer again")
        self.delete_button = QPushButton("Delete from disk…")
        self.delete_button.setAccessibleName("Delete the selected model from disk")
        self.delete_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        self.layout_.addLayout(buttons)
        self.setTabOrder(self.table, self.refresh_button)
        self.setTabOrder(self.refresh_button, self.delete_button)
        self.refresh_button.clicked.connect(self.refresh_requested)
        self.delete_button.clicked.connect(self._delete_clicked)
        self.table.selected_changed.connect(lambda row: self.delete_button.setEnabled(row is not None))

    def _delete_clicked(self) -> None:
        row: PickerRow | None = self.table.selected_row()
        if row is not None:
            self.delete_requested.emit(row)
