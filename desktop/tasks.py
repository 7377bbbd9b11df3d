"""The one way to run work off the UI thread.

    Task(load_model, path, parent=self).success(show).failure(report).run_in_background()

A plain function runs once and its return value reaches `success`; a generator function streams: each
value it yields reaches `progress` (on the UI thread, in order) and its return value reaches `success`.
Callbacks always run on the UI thread, because they are delivered through queued Qt signals owned by
an object living there. `serial="name"` runs tasks one after another on that name's own thread, for a
resource that must have one owner (`serial=True`: the engine's; "chat store": the chats database), and
never waits behind other work.

`parent` names the widget (or other QObject) the answer is for: once it has been deleted (a closed dialog, a
picker gone), nothing more reaches the callbacks, so no call site checks whether its widget still exists.
Without a parent, a callback that is a bound method of a deleted QObject is skipped too.
"""
from __future__ import annotations

import inspect
import logging
import time
import traceback
from collections import deque
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

ENGINE_LANE = "engine"
# Background tasks mostly wait (on the network, the disk, worker processes): Qt's default of one thread per
# core let two slow hub requests on a 2-core machine hold up every other task.
SHARED_THREADS = 8

_serial_pools: dict[str, QThreadPool] = {}
_live_tasks: set["Task"] = set()  # keeps a running task (and its signals) alive until it reports


def _pool(serial: bool | str) -> QThreadPool:
    if not serial:
        shared = QThreadPool.globalInstance()
        if shared.maxThreadCount() < SHARED_THREADS:
            shared.setMaxThreadCount(SHARED_THREADS)
        return shared
    lane = ENGINE_LANE if serial is True else serial
    if lane not in _serial_pools:
        pool = QThreadPool()
        pool.setMaxThreadCount(1)
        pool.setExpiryTimeout(-1)
        _serial_pools[lane] = pool
    return _serial_pools[lane]


# What a worker thread held when its task ended: the task (its signals' QObject), the result or the error with its
# traceback, whose frames may hold objects with Qt connections. Freed on a worker thread, such an object makes
# PySide disconnect there, holding Qt's connection lock while it waits for the GIL, as the UI thread holds the GIL
# while it waits for that lock to connect something: a deadlock (seen in a picker test). So a worker leaves them
# here, and the UI thread lets go of them a while later, once the worker is surely done with them.
_RELEASE_AFTER_SECONDS = 1.0
_to_release: deque[tuple[float, object]] = deque()     # (when left, what); deque appends are thread-safe


def _release_on_ui_thread(*held: object) -> None:
    _to_release.append((time.monotonic(), held))


def _release_what_workers_left() -> None:
    """UI thread: let go of what workers left at least _RELEASE_AFTER_SECONDS ago."""
    settled = time.monotonic() - _RELEASE_AFTER_SECONDS
    while _to_release and _to_release[0][0] <= settled:
        _to_release.popleft()


class _Signals(QObject):
    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object)


class _Runner(QRunnable):
    def __init__(self, task: "Task") -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._task = task

    def run(self) -> None:
        task, self._task = self._task, None
        outcome = self._outcome(task)
        self._emit(*outcome)
        _release_on_ui_thread(task, outcome)
        del task, outcome

    def _outcome(self, task: "Task") -> tuple:
        """(the signal to emit, the value); no local of this frame refers to the error, so the error's traceback
        (which keeps this frame) makes no reference cycle, which only the collector, on any thread, would free."""
        try:
            result = task.function(*task.args, **task.kwargs)
            if inspect.isgenerator(result):
                result = self._drain(task, result)
        except BaseException as error:  # noqa: BLE001 - every failure must reach the UI, never kill a thread
            log.debug("task %s failed:\n%s", task.name, traceback.format_exc())
            return task.signals.failed, error
        return task.signals.succeeded, result

    @staticmethod
    def _emit(signal, value: Any) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the application (and the task's signals with it) went away while the work ran
            log.debug("a background task finished after its signals were deleted")

    def _drain(self, task: "Task", generator) -> Any:
        while True:
            try:
                value = next(generator)
            except StopIteration as stop:
                return stop.value
            self._emit(task.signals.progressed, value)


class Task:
    def __init__(self, function: Callable, *args: Any, parent: QObject | None = None, **kwargs: Any) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.parent = parent
        self.name = getattr(function, "__qualname__", repr(function))
        self.signals = _Signals()
        self._on_success: Callable[[Any], None] | None = None
        self._on_failure: Callable[[BaseException], None] | None = None
        self.signals.succeeded.connect(self._deliver_success)
        self.signals.failed.connect(self._deliver_failure)

    def success(self, callback: Callable[[Any], None]) -> "Task":
        self._on_success = callback
        return self

    def failure(self, callback: Callable[[BaseException], None]) -> "Task":
        self._on_failure = callback
        return self

    def progress(self, callback: Callable[[Any], None]) -> "Task":
        self.signals.progressed.connect(lambda value: self._deliver(callback, value))
        return self

    def run_in_background(self, *, serial: bool | str = False) -> "Task":
        _live_tasks.add(self)
        _pool(serial).start(_Runner(self))
        return self

    def _deliver_success(self, result: Any) -> None:
        _release_what_workers_left()
        _live_tasks.discard(self)
        if self._on_success:
            self._deliver(self._on_success, result)

    def _deliver_failure(self, error: BaseException) -> None:
        _release_what_workers_left()
        _live_tasks.discard(self)
        if self._on_failure:
            self._deliver(self._on_failure, error)
        else:
            log.error("background task %s failed: %s", self.name, error)

    def _deliver(self, callback: Callable[[Any], None], value: Any) -> None:
        """A widget closed while its work ran is gone: its answer has no one to go to."""
        if _alive(self.parent) and _alive(getattr(callback, "__self__", None)):
            callback(value)


def _alive(owner: object) -> bool:
    return not isinstance(owner, QObject) or shiboken6.isValid(owner)


def wait_for_serial_tasks(timeout_ms: int = 5000) -> bool:
    """Used at shutdown: let the owners of the engine and of the chats finish before the process ends."""
    return all(pool.waitForDone(timeout_ms) for pool in list(_serial_pools.values()))
