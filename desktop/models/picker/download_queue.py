"""core.models.downloads.manager.DownloadManager as Qt signals: its progress callbacks (on worker threads) arrive as
``progressed(DownloadProgress)`` on the UI thread; every call that touches disk or network runs in a Task.
"""
from __future__ import annotations

import shiboken6
from PySide6.QtCore import QObject, Signal

from core.models.downloads.manager import DownloadManager, DownloadProgress, DownloadRequest
from desktop.models.picker.rows import PickerRow
from desktop.tasks import Task


class DownloadQueue(QObject):
    progressed = Signal(object)        # DownloadProgress, on the UI thread
    failed_to_start = Signal(str)      # a sentence (an unsafe file name ...)

    def __init__(self, manager: DownloadManager | None = None, parent=None) -> None:
        super().__init__(parent)
        self.manager = manager or DownloadManager()
        self._earlier_listener = self.manager.on_progress
        self.manager.on_progress = self._on_progress   # called on the manager's worker threads
        self.latest: dict[tuple[str, str], DownloadProgress] = {}   # (repo, file) -> its newest progress

    def _on_progress(self, progress: DownloadProgress) -> None:
        if self._earlier_listener is not None:
            self._earlier_listener(progress)
        if shiboken6.isValid(self):
            self.progressed.emit(progress)  # queued to the UI thread: this object lives there

    def download(self, row: PickerRow) -> None:
        """Queue every part of the row's file, and of a vision model's projector (progress arrives through
        ``progressed``; each is verified like any download)."""
        requests = [DownloadRequest(row.repo_id or "", part, row.revision, sha, size)
                    for part, sha, size in row.downloads]
        (Task(lambda: [self.manager.enqueue(request) for request in requests], parent=self)
         .failure(lambda error: self.failed_to_start.emit(str(error)))
         .run_in_background())

    def pause(self, job_id: str) -> None:
        Task(self.manager.pause, job_id).run_in_background()

    def resume(self, job_id: str) -> None:
        Task(self.manager.resume, job_id).run_in_background()

    def cancel(self, job_id: str) -> None:
        Task(self.manager.cancel, job_id).run_in_background()

    def record(self, progress: DownloadProgress) -> None:
        self.latest[(progress.repo_id, progress.filename)] = progress

    def row_progress(self, row: PickerRow) -> list[DownloadProgress]:
        """The newest progress of each part of the row's file (and its projector) that was queued in this session."""
        found = (self.latest.get((row.repo_id or "", part)) for part, _sha, _size in row.downloads)
        return [progress for progress in found if progress is not None]

    def close(self) -> None:
        """Pause running transfers (their bytes are kept for a resume) and stop the workers."""
        self.manager.close()
