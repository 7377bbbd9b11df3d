"""Where LlamaDesk's log lines go: a rotating file in the log folder, plus stderr when a terminal reads it.

Call `configure()` once at start (the GUI and the CLI both may); later calls change nothing. The file is
`<log folder>/llamadesk.log`, rotated at LOG_FILE_BYTES with LOG_BACKUPS older copies kept, so a user
can attach it to a bug report without it ever growing without bound.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from core.platform import locations

LOG_FILE_NAME = "llamadesk.log"
LOG_FILE_BYTES = 2 * 1024 * 1024
LOG_BACKUPS = 3
LINE_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
_HANDLER_NAME = "llamadesk-log-file"
_configured = False

log = logging.getLogger(__name__)


def log_file() -> Path:
    return locations.log_dir() / LOG_FILE_NAME


def stderr_is_terminal() -> bool:
    """True when someone can read stderr: a terminal (a windowed app on Windows has no stderr at all)."""
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def configure(level: int = logging.INFO, *, to_stderr: bool | None = None) -> Path | None:
    """Send log records to the rotating log file (and stderr when run from a terminal).

    Returns the log file's path, or None when the log folder cannot be written (then only stderr logs,
    and a warning says why): a read-only home must not stop the app from starting.
    """
    global _configured
    root = logging.getLogger()
    if _configured:
        existing = [h for h in root.handlers if h.get_name() == _HANDLER_NAME]
        return Path(existing[0].baseFilename) if existing else None  # type: ignore[attr-defined]
    _configured = True
    root.setLevel(level)
    formatter = logging.Formatter(LINE_FORMAT)
    if to_stderr is None:
        to_stderr = stderr_is_terminal() or bool(os.environ.get("LLAMADESK_LOG_STDERR"))
    if to_stderr and sys.stderr is not None:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(formatter)
        root.addHandler(console)
    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_FILE_BYTES,
                                                       backupCount=LOG_BACKUPS, encoding="utf-8")
    except OSError as error:
        log.warning("Logging to the terminal only: the log folder %s cannot be written (%s).",
                    path.parent, error)
        return None
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    return path
