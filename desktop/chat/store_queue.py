"""Calls to the ChatStore, run off the UI thread one after another, in the order they were asked for.

Order matters (an answer must be begun before text is appended to it, and a list refresh must see the
rename before it), so the store gets its own queue: one background Task, on the store's own thread
(tasks.py's "chat store" lane), drains it while there is work and ends when it is empty.

    queue.call(store.rename_conversation, id, title, done=refresh, failed=show_error)
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

from desktop.tasks import Task

# The chats database has one owner thread of its own: a streamed answer is written within its batching delay
# even while the shared pool is busy with hub requests or a fit check.
STORE_LANE = "chat store"


@dataclass
class _Job:
    function: Callable
    args: tuple
    done: Callable[[Any], None] | None
    failed: Callable[[BaseException], None] | None


@dataclass
class _Outcome:
    job: _Job
    result: Any = None
    error: BaseException | None = None


class StoreQueue(QObject):
    failed = Signal(str)     # a sentence for the user, for jobs that name no `failed` callback

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._draining = False
        self._outstanding = 0

    @property
    def idle(self) -> bool:
        """Every job has run and reported (for tests and shutdown)."""
        return self._outstanding == 0

    def call(self, function: Callable, *args: Any, done: Callable[[Any], None] | None = None,
             failed: Callable[[BaseException], None] | None = None) -> None:
        self._outstanding += 1
        with self._lock:
            self._jobs.append(_Job(function, args, done, failed))
            if self._draining:
                return
            self._draining = True
        Task(self._drain).progress(self._report).run_in_background(serial=STORE_LANE)

    # --- background side ---

    def _drain(self):
        while True:
            with self._lock:
                if not self._jobs:
                    self._draining = False
                    return
                job = self._jobs.popleft()
            try:
                yield _Outcome(job, result=job.function(*job.args))
            except Exception as error:  # noqa: BLE001 - reported to the UI as a sentence
                yield _Outcome(job, error=error)

    # --- UI side ---

    def _report(self, outcome: _Outcome) -> None:
        self._outstanding -= 1
        job = outcome.job
        if outcome.error is None:
            if job.done:
                job.done(outcome.result)
        elif job.failed:
            job.failed(outcome.error)
        else:
            self.failed.emit(str(outcome.error) or type(outcome.error).__name__)
