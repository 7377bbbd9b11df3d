"""llama.cpp's log, inside the worker: written to the worker's stderr file and kept in a short ring.

The ring lets a failed load explain itself (llama.cpp reports most failures only in its log); the
stderr file is what EngineCrashed quotes when the process dies.
"""
from __future__ import annotations

import ctypes
import os
from collections import deque

import llama_cpp.llama_cpp as native

_LEVEL_DEBUG, _LEVEL_WARN, _LEVEL_ERROR, _LEVEL_CONT = 1, 3, 4, 5  # ggml_log_level
_STDERR_FD = 2


class NativeLog:
    """Installs itself as llama.cpp's log callback; `recent()` gives the last warning/error lines."""

    def __init__(self, keep_lines: int = 60) -> None:
        self._problems: deque[str] = deque(maxlen=keep_lines)
        self._last_level = 0
        self._callback = native.llama_log_callback(self._on_log)  # keep a reference: C holds it
        native.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _user_data) -> None:
        if level == _LEVEL_CONT:
            level = self._last_level
        self._last_level = level
        if level == _LEVEL_DEBUG or not text:
            return
        os.write(_STDERR_FD, text)
        if level in (_LEVEL_WARN, _LEVEL_ERROR):
            line = text.decode("utf-8", errors="replace").strip()
            if line:
                self._problems.append(line)

    def clear(self) -> None:
        """Forget older problems; what follows belongs to the next operation."""
        self._problems.clear()

    def recent(self) -> tuple[str, ...]:
        return tuple(self._problems)
