"""The downloads list: one entry per file with a progress bar, bytes, speed, ETA, Pause/Resume/Cancel, and the
download manager's sentence when it fails (checksum mismatch, no disk space, gated repository, offline ...).
"""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea,
                               QSizePolicy, QVBoxLayout, QWidget)

from core.models.downloads.manager import DownloadProgress, DownloadState
from core.platform.units import format_bytes
from desktop.models.picker.file_table import elide_file_name

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
    if progress.state == DownloadState.VERIFYING and progress.total_bytes:
        return f"{STATE_WORDS[progress.state]} · {progress.checked_bytes * 100 // progress.total_bytes} % of {total}"
    items = [STATE_WORDS[progress.state], f"{format_bytes(progress.bytes_done)} of {total}"]
    if progress.state == DownloadState.DOWNLOADING and progress.speed_bytes_per_second > 0:
        items += [f"{format_bytes(progress.speed_bytes_per_second)}/s", eta_text(progress.eta_seconds)]
    return " · ".join(item for item in items if item)


class NameLine(QWidget):
    """'<b>file.gguf</b> · owner/repo' on one line that shortens instead of pushing the buttons out: the repository
    goes first (elided at its end), then the file name is shortened before its quantisation suffix, which stays."""

    SEPARATOR = " · "

    def __init__(self, filename: str, repo_id: str, parent=None) -> None:
        super().__init__(parent)
        self.filename = filename
        self.repo_id = repo_id
        self.setToolTip(f"{filename}\n{repo_id}" if repo_id else filename)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def _bold(self) -> QFont:
        font = QFont(self.font())
        font.setBold(True)
        return font

    def texts(self, width: int | None = None) -> tuple[str, str]:
        """What fits in ``width`` (the widget's own by default): (file name part, ' · repository' part)."""
        width = self.width() if width is None else width
        bold, plain = QFontMetrics(self._bold()), self.fontMetrics()
        name_width = bold.horizontalAdvance(self.filename)
        if name_width > width:
            return elide_file_name(self.filename, bold, width), ""
        tail = plain.elidedText(self.SEPARATOR + self.repo_id, Qt.TextElideMode.ElideRight, width - name_width)
        return self.filename, (tail if self.repo_id and len(tail.strip(" ·…")) >= 3 else "")

    def sizeHint(self) -> QSize:
        bold = QFontMetrics(self._bold())
        text = bold.horizontalAdvance(self.filename) + self.fontMetrics().horizontalAdvance(
            self.SEPARATOR + self.repo_id)
        return QSize(text + 2, max(bold.height(), self.fontMetrics().height()) + 2)

    def minimumSizeHint(self) -> QSize:
        return QSize(40, self.sizeHint().height())

    def paintEvent(self, _event) -> None:
        name, tail = self.texts()
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        align = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        painter.setFont(self._bold())
        painter.drawText(self.rect(), align, name)
        if tail:
            painter.setFont(self.font())
            offset = QFontMetrics(self._bold()).horizontalAdvance(name)
            painter.drawText(self.rect().adjusted(offset, 0, 0, 0), align, tail)
        painter.end()


class DownloadEntry(QFrame):
    pause_clicked = Signal(str)
    resume_clicked = Signal(str)
    cancel_clicked = Signal(str)

    def __init__(self, progress: DownloadProgress, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("pickerDownload")
        self.job_id = progress.job_id
        self.name = NameLine(progress.filename, progress.repo_id)
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
        button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)  # never shrunk below its text
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
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # entries shorten their names
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
