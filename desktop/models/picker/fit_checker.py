"""Fit-checks the rows of a file table in the background and fills each row in as its result arrives.

A new check (new rows, a different machine or choice) stops the previous one; results of a stopped check are
dropped. The work is desktop.models.picker.work.fit_rows, streamed through a generator Task.
"""
from __future__ import annotations

import threading
from dataclasses import replace

from PySide6.QtCore import QObject, Signal

from core.models.fit_check import FileFit
from desktop.models.picker.file_table import FileTableModel
from desktop.models.picker.rows import PickerRow
from desktop.models.picker.work import Planning, fit_rows
from desktop.tasks import Task


class FitChecker(QObject):
    row_fitted = Signal(object)    # the PickerRow with its fit (after the table shows it)
    finished = Signal()

    def __init__(self, model: FileTableModel, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self._stop = threading.Event()
        self._generation = 0
        self.pending = 0
        self._active = False   # from check() until its task ends: the last rows can arrive before `finished`

    def check(self, rows: list[PickerRow], planning: Planning) -> None:
        """Check `rows` (already in the model) under `planning`; earlier results for them are replaced."""
        self.stop()
        self._generation += 1
        generation, stop = self._generation, threading.Event()
        self._stop = stop
        self.destroyed.connect(lambda *_: stop.set())  # deleted without stop(): its work must not wait on
        self.pending = len(rows)
        self._active = bool(rows)
        if not rows:
            self.finished.emit()
            return
        (Task(fit_rows, rows, planning, stop, parent=self)
         .progress(lambda batch: self._fitted(generation, batch))
         .success(lambda _none: self._done(generation))
         .failure(lambda _error: self._done(generation))
         .run_in_background())

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._active

    def _fitted(self, generation: int, batch: list[tuple[str, FileFit]]) -> None:
        if generation != self._generation:
            return
        self.pending = max(self.pending - len(batch), 0)
        rows = [replace(current, fit=fit) for key, fit in batch if (current := self.model.row(key)) is not None]
        self.model.replace_rows(rows)
        for row in rows:
            self.row_fitted.emit(row)

    def _done(self, generation: int) -> None:
        if generation == self._generation:
            self.pending = 0
            self._active = False
            self.finished.emit()
