"""The engine worker process: its entry point, its stderr file and its logging.

EngineClient starts `worker_main` with the spawn method. The worker's stderr (fd 2: Python,
llama.cpp and ggml messages, faulthandler tracebacks) goes to a file, so that when the process
dies the client can quote its last lines. The request handling itself is WorkerService
(worker_service.py), imported only here, after the redirection, and never in the client process,
which therefore does not load llama.cpp at all.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import sys

log = logging.getLogger(__name__)


def worker_main(connection, stop_value, stderr_path: str, log_level: int = logging.INFO) -> None:
    """Serve requests from `connection` until a ShutdownRequest or until the client goes away."""
    _redirect_stderr(stderr_path)
    logging.basicConfig(stream=sys.stderr, level=log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faulthandler.enable(sys.stderr)
    log.info("engine worker %d started", os.getpid())
    from core.engine.worker_service import WorkerService

    WorkerService(connection, stop_value).serve()
    log.info("engine worker %d exits", os.getpid())


def _redirect_stderr(path: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
