"""The downloads list: one entry per file with a progress bar, bytes, speed, ETA, Pause/Resume/Cancel, and the
download manager's sentence when it fails (checksum mismatch, no disk space, gated repository, offline ...).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from core.downloads import DownloadProgress, DownloadState
from core.units import format_bytes

STATE_WORDS = {DownloadState.QUEUED: "Waiting", DownloadState.DOWNLOADING: "Downloading",
               DownloadState.VERIFYING: "Checking SHA-256", DownloadState.PAUSED: "Paused",
               DownloadState.DONE: "Done — verified", DownloadState.FAILED: "Failed",
               DownloadState.CANCELLED: "Cancelled"}


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min left"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s left"
    return f"{seconds} s left"


def status_text(progress: DownloadProgress) -> str:
    """'Downloading · 1.2 GiB of 4.6 GiB · 38.0 MiB/s · 1 min 32 s left', or the failure's sentence."""
    if progress.state == DownloadState.FAILED and progress.error:
        return progress.error
    total = format_bytes(progress.total_bytes) if progress.total_bytes else "?"
    items = [STATE_WORDS[progress.state], f"{format_bytes(progress.bytes_done)} of {total}"]
    if progress.state == DownloadState.DOWNLOADING and progress.speed_bytes_per_second > 0:
        items += [f"{format_bytes(progress.speed_bytes_per_second)}/s", eta_text(progress.eta_seconds)]
    return " · ".join(item for item in items if item)


class DownloadEntry(QFrame):
    pause_clicked = Signal(str)
    resume_clicked = Signal(str)
    cancel_clicked = Signal(str)

    def __init__(self, progress: DownloadProgress, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("pickerDownload")
        self.job_id = progress.job_id
        self.name = QLabel(f"<b>{progress.filename}</b> <span>· {progress.repo_id}</span>")
        self.name.setAccessibleName(f"Download of {progress.filename}")
        self.bar = QProgressBar()
        self.bar.setAccessibleName(f"Progress of {progress.filename}")
        self.bar.setTextVisible(False)
        self.status = QLabel("")
        self.status.setObjectName("pickerDownloadStatus")
        self.status.setWordWrap(True)
        self.status.setAccessibleName(f"Status of {progress.filename}")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pause_button = self._button("Pause", f"Pause the download of {progress.filename}", self.pause_clicked)
        self.resume_button = self._button("Resume", f"Resume the download of {progress.filename}",
                                          self.resume_clicked)
        self.cancel_button = self._button("Cancel", f"Cancel the download of {progress.filename}",
                                          self.cancel_clicked)
        self._lay_out()
        self.show_progress(progress)

    def _button(self, text: str, accessible: str, signal) -> QPushButton:
        button = QPushButton(text)
        button.setAccessibleName(accessible)
        button.clicked.connect(lambda: signal.emit(self.job_id))
        return button

    def _lay_out(self) -> None:
        buttons = QHBoxLayout()
        buttons.setSpacing(4)
        for button in (self.pause_button, self.resume_button, self.cancel_button):
            buttons.addWidget(button)
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        grid.addWidget(self.name, 0, 0)
        grid.addLayout(buttons, 0, 1, 2, 1, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.bar, 1, 0)
        grid.addWidget(self.status, 2, 0, 1, 2)
        grid.setColumnStretch(0, 1)

    def show_progress(self, progress: DownloadProgress) -> None:
        total = progress.total_bytes or 0
        self.bar.setRange(0, 1000 if total else 0)
        if total:
            self.bar.setValue(int(1000 * min(progress.bytes_done, total) / total))
        self.status.setText(status_text(progress))
        self.status.setProperty("state", progress.state.value)
        self.style().unpolish(self.status)
        self.style().polish(self.status)
        running = progress.state in (DownloadState.QUEUED, DownloadState.DOWNLOADING, DownloadState.VERIFYING)
        self.pause_button.setVisible(running)
        self.resume_button.setVisible(progress.state in (DownloadState.PAUSED, DownloadState.FAILED))
        self.resume_button.setText("Retry" if progress.state == DownloadState.FAILED else "Resume")
        self.cancel_button.setVisible(not progress.state.finished or progress.state == DownloadState.FAILED)


class DownloadsList(QWidget):
    """Entries newest last; empty, it says so."""

    pause_clicked = Signal(str)
    resume_clicked = Signal(str)
    cancel_clicked = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("pickerDownloads")
        self.setAccessibleName("Downloads")
        self.entries: dict[str, DownloadEntry] = {}
        self.empty = QLabel("No downloads yet. Pick a file and press Download.")
        self.empty.setObjectName("pickerNote")
        self.empty.setAccessibleName("Downloads list status")
        inner = QWidget()
        inner.setObjectName("pickerDownloadsInner")
        self.column = QVBoxLayout(inner)
        self.column.setContentsMargins(0, 0, 0, 0)
        self.column.setSpacing(6)
        self.column.addWidget(self.empty)
        self.column.addStretch(1)
        scroll = QScrollArea()
        scroll.setObjectName("pickerDownloadsScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

    def show_progress(self, progress: DownloadProgress) -> None:
        entry = self.entries.get(progress.job_id)
        if entry is None:
            entry = DownloadEntry(progress)
            entry.pause_clicked.connect(self.pause_clicked)
            entry.resume_clicked.connect(self.resume_clicked)
            entry.cancel_clicked.connect(self.cancel_clicked)
            self.entries[progress.job_id] = entry
            self.column.insertWidget(self.column.count() - 1, entry)
            self.empty.hide()
        entry.show_progress(progress)
