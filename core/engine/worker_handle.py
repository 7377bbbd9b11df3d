"""The client's handle on one engine worker process: the process, its pipe, its stop value, its stderr file."""
from __future__ import annotations

import itertools
import logging
import multiprocessing
import time
from multiprocessing.connection import wait
from pathlib import Path

from core.platform import locations
from core.engine.protocol import ShutdownRequest
from core.engine.worker import worker_main

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 5.0
KILL_SECONDS = 2.0
STDERR_TAIL_LINES = 40
STDERR_TAIL_BYTES = 16384
KEPT_CRASH_LOGS = 10


class WorkerDied(Exception):
    """The worker process is gone and nothing is left to read from it."""


class WorkerHandle:
    """One spawned worker process, its pipe, its stop value and its stderr file."""

    _numbers = itertools.count(1)

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.log_path = _new_log_path(next(self._numbers))
        self.stop_value = context.RawValue("q", 0)
        self.connection, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=worker_main, name="llamadesk-engine", daemon=True,
                                       args=(child_end, self.stop_value, str(self.log_path)))
        self.process.start()
        child_end.close()            # so a dead worker reads as end-of-file here
        log.info("engine worker started (pid %s, stderr %s)", self.process.pid, self.log_path)

    def send(self, message: object) -> None:
        try:
            self.connection.send(message)
        except (BrokenPipeError, EOFError, OSError) as error:
            raise WorkerDied() from error

    def receive(self) -> object:
        """The next message; WorkerDied when the process is gone and nothing is left to read."""
        ready = wait([self.connection, self.process.sentinel])
        if self.connection in ready:
            try:
                return self.connection.recv()
            except (EOFError, OSError):
                pass
        raise WorkerDied()

    def exit_code(self) -> int | None:
        self.process.join(timeout=KILL_SECONDS)
        return self.process.exitcode

    def stderr_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as stream:
                stream.seek(0, 2)
                stream.seek(max(0, stream.tell() - STDERR_TAIL_BYTES))
                lines = stream.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-STDERR_TAIL_LINES:])

    def shut_down(self) -> None:
        """Ask politely, then terminate, then kill; the stderr file goes when the exit was clean."""
        if self.process.is_alive():
            try:
                self.connection.send(ShutdownRequest())
            except OSError:
                pass
            self.process.join(timeout=SHUTDOWN_SECONDS)
        for ending in (self.process.terminate, self.process.kill):
            if not self.process.is_alive():
                break
            log.warning("engine worker %s does not exit; %s", self.process.pid, ending.__name__)
            ending()
            self.process.join(timeout=KILL_SECONDS)
        self.connection.close()
        if self.process.exitcode == 0:
            self.log_path.unlink(missing_ok=True)


def _new_log_path(number: int) -> Path:
    folder = locations.log_dir() / "engine"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{number}.log"


def prune_crash_logs(folder: Path) -> None:
    logs = sorted(folder.glob("worker-*.log"), key=lambda path: path.stat().st_mtime)
    for old in logs[:-KEPT_CRASH_LOGS]:
        old.unlink(missing_ok=True)
