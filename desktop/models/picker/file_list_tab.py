"""A tab holding one file table, its background fit check and a status line; the three tabs build on it."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from core.models.library import LocalModel
from desktop.models.picker.file_table import FileTable
from desktop.models.picker.fit_checker import FitChecker
from desktop.models.picker.rows import PickerRow, with_local_copies
from desktop.models.picker.work import Planning


class FileListTab(QWidget):
    row_changed = Signal(object)   # a row replaced in this tab's table (fit arrived, downloaded ...)

    def __init__(self, accessible_name: str, parent=None) -> None:
        super().__init__(parent)
        self.table = FileTable(f"{accessible_name} files")
        self.checker = FitChecker(self.table.source, self)
        self.status = QLabel("")
        self.status.setObjectName("pickerNote")
        self.status.setAccessibleName(f"{accessible_name} status")
        self.status.setWordWrap(True)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(6, 6, 6, 6)
        self.layout_.addWidget(self.table, 1)
        self.layout_.addWidget(self.status)
        self._count_timer = QTimer(self, singleShot=True, interval=100)
        self._count_timer.timeout.connect(self.show_count)
        self.checker.row_fitted.connect(self._row_fitted)
        self.checker.finished.connect(self.show_count)

    def show_rows(self, rows: list[PickerRow], planning: Planning | None) -> None:
        """Replace the table's rows and fit-check them (when the machine is known)."""
        self.table.source.set_rows(_without_projectors(rows))
        self.refit(planning)

    def update_rows(self, rows: list[PickerRow], planning: Planning | None) -> None:
        """New rows for the table that keep the fits already known for the same files; check only the others."""
        known = {row.key: row.fit for row in self.table.source.rows if row.fit is not None}
        kept = [replace(row, fit=known.get(row.key)) for row in _without_projectors(rows)]
        selected = self.table.selected_row()
        self.table.source.set_rows(kept)
        if selected is not None:
            self.table.select_key(selected.key)
        if planning is not None:
            self.checker.check([row for row in kept if row.fit is None], planning)
            self.show_count()

    def refit(self, planning: Planning | None) -> None:
        rows = self.table.source.rows
        if planning is None:
            self.status.setText("Reading this machine's memory…")
            return
        self.checker.check(list(rows), planning)
        self.show_count()

    def apply_library(self, library: list[LocalModel]) -> None:
        """Mark the rows whose file is on this computer (and clear those deleted since)."""
        for old, new in zip(list(self.table.source.rows), with_local_copies(self.table.source.rows, library)):
            if new.local != old.local:
                self.table.source.replace_row(new)
                self.row_changed.emit(new)

    def _row_fitted(self, row: PickerRow) -> None:
        self.row_changed.emit(row)
        self._count_timer.start()

    def show_count(self) -> None:
        total = len(self.table.source.rows)
        hidden = total - self.table.filter.rowCount()
        if self.checker.running:
            text = f"Checking the fit of {total} files for this machine: {total - self.checker.pending} done…"
        else:
            text = f"{total} files" + (f" · {hidden} hidden because they do not fit this machine" if hidden else "")
        self.status.setText(text)


def _without_projectors(rows: list[PickerRow]) -> list[PickerRow]:
    """A projector (mmproj) cannot chat alone: it shows as its model's vision mark, never as a row of its own."""
    return [row for row in rows if not row.is_projector]
