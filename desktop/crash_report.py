"""Crash reports of the GUI process itself, and the offer to read one at the next start.

Two kinds of report land in `<log folder>/crashes/`:
- a *fatal crash* (segfault, abort, ...): Python's faulthandler writes the stacks of every thread into
  this run's `run-<pid>-<start>.txt`. A clean exit deletes that file; one left behind by a process that is
  gone is turned into `crash-<time>.txt` at the next start, with a header and the last log lines;
- an *unhandled Python exception* (sys.excepthook, threading.excepthook): written at once as
  `crash-<time>-exception.txt`; the app may well keep running (Qt slots survive exceptions).

A report not yet offered is "unseen"; once the user has answered the offer (in the window's notice bar) it
is renamed `*.seen.txt`. A start that Qt could not give a window (desktop/platform_start.py) ends through
end_run() before Qt's abort(): it explains itself on stderr and is not offered as a crash.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import platform
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil

from core.platform import locations, logs

log = logging.getLogger(__name__)

FOLDER_NAME = "crashes"
RUN_PREFIX = "run-"
REPORT_PREFIX = "crash-"
SEEN_SUFFIX = ".seen.txt"
KEEP_SEEN = 20
LOG_TAIL_LINES = 60
FATAL_QUESTION = "LlamaDesk closed unexpectedly last time. Show the report?"
EXCEPTION_QUESTION = "LlamaDesk ran into an unexpected error last time. Show the report?"


def crash_dir() -> Path:
    return locations.log_dir() / FOLDER_NAME


def _stamp(seconds: float | None = None) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(seconds))


def _about_this_app() -> str:
    bundled = "bundled app" if getattr(sys, "frozen", False) else "from source"
    return (f"LlamaDesk ({bundled}), Python {platform.python_version()}, {platform.platform()}, "
            f"executable {sys.executable}")


def _log_tail(lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = logs.log_file().read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class CrashReport:
    path: Path

    @property
    def is_fatal(self) -> bool:
        return not self.path.name.endswith("-exception.txt")

    @property
    def question(self) -> str:
        return FATAL_QUESTION if self.is_fatal else EXCEPTION_QUESTION

    def text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            return f"The report {self.path} could not be read: {error}"


class CrashRecorder:
    """Owns this run's crash file and the exception hooks; knows the reports left by earlier runs."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or crash_dir()
        self._run_file: IO[str] | None = None
        self._run_path: Path | None = None
        self._previous_excepthook = sys.excepthook
        self._previous_thread_hook = threading.excepthook

    # --- this run ---

    def begin_run(self) -> None:
        """Adopt what earlier runs left behind, then watch this one (faulthandler and exception hooks)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.collect_leftovers()
        self._run_path = self.folder / f"{RUN_PREFIX}{os.getpid()}-{int(time.time())}.txt"
        self._run_file = open(self._run_path, "w", encoding="utf-8")
        faulthandler.enable(self._run_file, all_threads=True)
        sys.excepthook = self._on_exception
        threading.excepthook = self._on_thread_exception

    def end_run(self) -> None:
        """A clean exit: stop watching and remove this run's (empty) crash file."""
        sys.excepthook = self._previous_excepthook
        threading.excepthook = self._previous_thread_hook
        if self._run_file is None or self._run_path is None:
            return
        faulthandler.disable()
        self._run_file.close()
        self._run_file = None
        if self._run_path.stat().st_size == 0:
            self._run_path.unlink(missing_ok=True)
        else:
            self._promote(self._run_path)

    # --- reports ---

    def collect_leftovers(self) -> list[Path]:
        """Turn crash files of runs that are gone into reports; drop the empty ones (killed, no trace)."""
        promoted = []
        for path in sorted(self.folder.glob(f"{RUN_PREFIX}*.txt")):
            pid = _run_pid(path)
            if pid is not None and pid != os.getpid() and psutil.pid_exists(pid):
                continue  # another LlamaDesk window is running
            if path.stat().st_size == 0:
                path.unlink(missing_ok=True)
            else:
                promoted.append(self._promote(path))
        return promoted

    def record_exception(self, kind: type[BaseException], error: BaseException,
                         trace: TracebackType | None, thread: str = "main thread") -> Path:
        body = "".join(traceback.format_exception(kind, error, trace))
        path = self._unique(f"{REPORT_PREFIX}{_stamp()}-exception.txt")
        header = f"An unhandled Python exception in the {thread} at {time.ctime()}.\n{_about_this_app()}\n"
        path.write_text(f"{header}\n{body}\nLast log lines:\n{_log_tail()}\n", encoding="utf-8")
        return path

    def unseen(self) -> list[CrashReport]:
        if not self.folder.is_dir():
            return []
        paths = [p for p in self.folder.glob(f"{REPORT_PREFIX}*.txt") if not p.name.endswith(SEEN_SUFFIX)]
        return [CrashReport(p) for p in sorted(paths)]

    def mark_seen(self, report: CrashReport) -> Path:
        seen = report.path.with_name(report.path.name[: -len(".txt")] + SEEN_SUFFIX)
        report.path.replace(seen)
        self._prune_seen()
        return seen

    # --- helpers ---

    def _promote(self, run_path: Path) -> Path:
        started = _run_start(run_path)
        trace = run_path.read_text(encoding="utf-8", errors="replace")
        report = self._unique(f"{REPORT_PREFIX}{_stamp(started)}.txt")
        header = (f"LlamaDesk stopped abruptly (process {_run_pid(run_path)}, started "
                  f"{time.ctime(started) if started else 'at an unknown time'}).\n{_about_this_app()}\n")
        report.write_text(f"{header}\n{trace}\nLast log lines:\n{_log_tail()}\n", encoding="utf-8")
        run_path.unlink(missing_ok=True)
        log.warning("A crash of an earlier run was found; its report is %s", report)
        return report

    def _unique(self, name: str) -> Path:
        path = self.folder / name
        counter = 1
        while path.exists():
            path = self.folder / name.replace(".txt", f"-{counter}.txt")
            counter += 1
        return path

    def _prune_seen(self) -> None:
        seen = sorted(self.folder.glob(f"*{SEEN_SUFFIX}"), key=lambda p: p.stat().st_mtime)
        for old in seen[:-KEEP_SEEN]:
            old.unlink(missing_ok=True)

    def _on_exception(self, kind, error, trace) -> None:
        if issubclass(kind, KeyboardInterrupt):
            self._previous_excepthook(kind, error, trace)
            return
        path = self.record_exception(kind, error, trace)
        log.error("Unhandled exception (report: %s)", path, exc_info=(kind, error, trace))

    def _on_thread_exception(self, hook_args: threading.ExceptHookArgs) -> None:
        if hook_args.exc_value is None:
            return
        name = hook_args.thread.name if hook_args.thread else "a background thread"
        path = self.record_exception(hook_args.exc_type, hook_args.exc_value, hook_args.exc_traceback,
                                     thread=f"thread {name!r}")
        log.error("Unhandled exception in thread %s (report: %s)", name, path,
                  exc_info=(hook_args.exc_type, hook_args.exc_value, hook_args.exc_traceback))


def _run_pid(path: Path) -> int | None:
    parts = path.stem.split("-")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


def _run_start(path: Path) -> float | None:
    parts = path.stem.split("-")
    return float(parts[2]) if len(parts) >= 3 and parts[2].isdigit() else None


# --- the offer at the next start (Qt) ------------------------------------------------------------------

def offer_unseen_reports(notice_bar, recorder: CrashRecorder) -> CrashReport | None:
    """Ask in the notice bar (above the chat, never over it) whether to show the newest unseen report; once
    answered, mark every unseen report seen. Returns the report offered, None when there is nothing to offer.
    """
    from desktop.widgets.notice_bar import NoticeAnswer

    reports = recorder.unseen()
    if not reports:
        return None
    newest = reports[-1]

    def answered(show: bool) -> None:
        if show:
            show_report(notice_bar.window(), newest)
        for report in reports:
            recorder.mark_seen(report)

    # Any answer (a button or the ✕) marks them seen; quitting the app without answering does not.
    notice_bar.ask(f"{newest.question} (It is saved in {newest.path.parent}.)",
                   [NoticeAnswer("Show the report", lambda: answered(True)),
                    NoticeAnswer("Not now", lambda: answered(False))],
                   dismissed=lambda: answered(False))
    return newest


def show_report(parent, report: CrashReport):
    """A plain, non-modal window with the report's text and a button to open its folder."""
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices, QFontDatabase
    from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout

    dialog = QDialog(parent)
    dialog.setObjectName("crashReportViewer")
    dialog.setWindowTitle(f"Crash report — {report.path.name}")
    dialog.resize(820, 560)
    text = QPlainTextEdit(report.text())
    text.setReadOnly(True)
    text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    open_folder = buttons.addButton("Open the folder", QDialogButtonBox.ButtonRole.ActionRole)
    open_folder.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(report.path.parent))))
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    dialog.show()
    return dialog
