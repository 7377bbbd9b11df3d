"""The picker's work off the UI thread: each function here runs inside a desktop.tasks.Task, never on the UI
thread. They only call core (catalog, hub, headers, library, planner, dry run) and hand back values.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ALL_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial

import psutil
from pathlib import Path

from core.fit import dry_run
from core.fit.choice import OffloadChoice
from core.fit.planner import Plan
from core.gguf.reader import ModelInfo
from core.machine.hardware import HardwareSnapshot
from core.models import catalog, fit_check, hub, library
from core.models.fit_check import FileFit, FitConditions
from core.models.remote_headers import HeaderCache
from desktop.models.picker.rows import PickerRow

FIT_WORKERS = 4
STALLED_SECONDS = 60
BATCH_SECONDS = 0.1


@dataclass(frozen=True)
class Planning:
    """What the fit check of one list needs: the machine, the user's choice and where headers are cached;
    ``processes`` (a FitProcesses) runs list checks outside this process."""

    hardware: HardwareSnapshot
    choice: OffloadChoice
    margin_bytes: int
    cache: HeaderCache
    processes: "WorkerProcesses | None" = field(default=None, compare=False)

    @property
    def conditions(self) -> FitConditions:
        return FitConditions(self.hardware, self.choice, self.margin_bytes)

    def worker_arguments(self) -> dict:
        """What a worker process needs to rebuild this planning (the cache by its folder)."""
        return {"hardware": self.hardware, "choice": self.choice, "margin_bytes": self.margin_bytes,
                "cache_root": self.cache.root}


class WorkerProcesses:
    """Worker processes for the picker's CPU-bound work: parsing headers, planning lists, inspecting the library.
    That is pure Python: in threads it holds the GIL the UI thread needs (a 200-file fit check stalled the UI for
    0.4-0.6 s), in processes it does not. Started on first use ("spawn", as the engine) at a lower priority; one
    set per picker, so they see the environment (HF_ENDPOINT, LLAMADESK_HOME) of their time. Call run() from a
    Task, never from the UI thread."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, min(FIT_WORKERS, (os.cpu_count() or 2) - 1))
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_worker)
            return self._pool

    def run(self, function, /, *args, **kwargs):
        """``function(*args, **kwargs)`` in a worker process (a module-level function); blocks for the result."""
        return self.pool().submit(function, *args, **kwargs).result()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self.closed.set()  # a list check waiting on this pool's answers stops: they will not come
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class RowPlan:
    """The plan of one row for the details pane, with the model it planned."""

    key: str
    info: ModelInfo
    plan: Plan
    choice: OffloadChoice


# -- fit check of a list, one result at a time -----------------------------------------------------------------------
def fit_rows(rows: list[PickerRow], planning: Planning, stop: threading.Event,
             batch_seconds: float = BATCH_SECONDS) -> Iterator[list[tuple[str, FileFit]]]:
    """Yield batches of (row key, FileFit) as rows' checks finish, at most one batch per ``batch_seconds``:
    the list fills in progressively while the UI thread handles a few updates a second, not one per file.

    Rows that carry plan inputs come first, planned right here (about a millisecond each, no header to read and no
    worker process to wait for): a catalog's verdicts are there as soon as its list is."""
    instant = [row for row in rows if row.planned_offline]
    if instant:
        yield [(row.key, fit_row(row, planning)) for row in instant if not stop.is_set()]
        rows = [row for row in rows if not row.planned_offline]
    if not rows or stop.is_set():
        return
    if planning.processes is not None:
        pool, owned = planning.processes.pool(), False
        submit = partial(pool.submit, _fit_row_in_worker, **planning.worker_arguments())
    else:
        pool, owned = ThreadPoolExecutor(FIT_WORKERS, thread_name_prefix="fit"), True
        submit = partial(pool.submit, fit_row, planning=planning)
    pending = {submit(row): row.key for row in rows}
    closed = planning.processes.closed if planning.processes is not None else threading.Event()
    last_answer = time.monotonic()
    try:
        while pending and not stop.is_set() and not closed.is_set():
            done, _ = wait(pending, timeout=batch_seconds, return_when=ALL_COMPLETED)
            if done:
                last_answer = time.monotonic()
                yield [(pending.pop(future), _result(future)) for future in done]
            elif time.monotonic() - last_answer > STALLED_SECONDS:
                # Never wait for ever: a task left waiting would also keep the app from quitting.
                yield [(key, FileFit("", "", None, None, None, "The fit check got no answer for "
                                     f"{STALLED_SECONDS} s and stopped; reopen the list to try again."))
                       for key in pending.values()]
                return
    finally:
        for future in pending:
            future.cancel()
        if owned:
            pool.shutdown(wait=False, cancel_futures=True)


def _result(future) -> FileFit:
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - a worker process that died: say so on the row
        return FileFit("", "", None, None, None, f"The fit check stopped unexpectedly: {error}")


def _start_worker() -> None:
    _lower_priority()
    _exit_with_the_app()


def _lower_priority() -> None:
    """Background checks yield the CPU to the window (and to a chat answer being generated)."""
    try:
        process = psutil.Process()
        process.nice(psutil.BELOW_NORMAL_PRIORITY_CLASS if os.name == "nt" else 10)
    except (psutil.Error, OSError, AttributeError):
        pass


def _exit_with_the_app() -> None:
    """A worker ends when the app's process does, even one killed outright: the pool's queue never closes for a
    worker (it holds both ends), so it would wait for work for ever."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-the-app", daemon=True).start()


_worker_caches: dict[Path, HeaderCache] = {}


def _planning_in_worker(hardware: HardwareSnapshot, choice: OffloadChoice, margin_bytes: int,
                        cache_root: Path) -> Planning:
    """The planning rebuilt in a worker process, with that process's own in-memory view of the header cache."""
    return Planning(hardware, choice, margin_bytes, _worker_caches.setdefault(cache_root, HeaderCache(cache_root)))


def _fit_row_in_worker(row: PickerRow, **planning) -> FileFit:
    # Without the model's tensor table: unpickling 200 of those in the window's process held the UI for 250 ms,
    # and a list row needs only its verdict (the details pane plans its row again, with the table).
    return replace(fit_row(row, _planning_in_worker(**planning)), info=None)


def _plan_row_in_worker(row: PickerRow, **planning) -> "RowPlan":
    return plan_row(row, _planning_in_worker(**planning))


def fit_row(row: PickerRow, planning: Planning) -> FileFit:
    """One row's fit: core's one fit check (the same the CLI and a load use)."""
    return fit_check.check_file(file_ref(row), planning.conditions, planning.cache)


def file_ref(row: PickerRow) -> fit_check.FileRef:
    """The row's file for the fit check, its projector with it (core's check resolves it, local or on the hub)."""
    return row.ref


# -- one row, for the details pane -----------------------------------------------------------------------------------
def plan_row_off_thread(row: PickerRow, planning: Planning) -> RowPlan:
    """plan_row in a worker process when the planning has them (a first header parse can take 150 ms)."""
    if planning.processes is None:
        return plan_row(row, planning)
    return planning.processes.run(_plan_row_in_worker, row, **planning.worker_arguments())


def plan_row(row: PickerRow, planning: Planning) -> RowPlan:
    """The plan for the details pane's context and KV choice (the one fit check, so the same as the list's)."""
    entries = row.fit.entries if row.fit is not None else ()
    fit = fit_check.check_file(file_ref(row), planning.conditions, planning.cache, entries)
    if fit.plan is None:
        raise FitCheckFailed(fit.error or f"{row.filename} could not be planned.")
    return RowPlan(row.key, fit.info, fit.plan, fit.choice)


class FitCheckFailed(Exception):
    """A row could not be planned; the message says why."""


def exact_figures(row: PickerRow, plan: Plan, cache: HeaderCache) -> dry_run.DryRunResult:
    """llama.cpp's own dry run for the planned load: on the header stub of a remote file, or on the local file."""
    entries = row.fit.entries if row.fit is not None else ()
    return fit_check.exact_figures(row.ref, plan, cache, entries)


# -- lists ----------------------------------------------------------------------------------------------------------
def load_catalog(path: Path | None = None) -> catalog.Catalog:
    return catalog.load_catalog(path)


def refresh_catalog(current: catalog.Catalog) -> catalog.Catalog:
    return catalog.refresh(current)


def search_hub(text: str, sort: str) -> list[hub.RepoSummary]:
    return hub.search(text, sort=sort)


def list_repo(repo_id: str) -> hub.RepoListing:
    return hub.list_files(repo_id)


def scan_library(sources: library.LibrarySources, processes: WorkerProcesses | None = None
                 ) -> list[library.LocalModel]:
    """The local library, each model's header read (in a worker process when given)."""
    if processes is None:
        return library.scan(sources)
    return processes.run(library.scan, sources)


def delete_model(model: library.LocalModel, sources: library.LibrarySources) -> list:
    return library.delete(model, sources)
