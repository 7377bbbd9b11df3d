"""llama.cpp's log, inside the worker: written to the worker's stderr file and kept in a short ring.

The ring lets a failed load explain itself (llama.cpp reports most failures only in its log); the
stderr file is what EngineCrashed quotes when the process dies. The buffer-size lines of a load are kept
too: they are llama.cpp's own account of what it allocated on each device (``allocations()``).
"""
from __future__ import annotations

import ctypes
import os
import re
from collections import defaultdict, deque

from core.engine.protocol import DeviceAllocation

_LEVEL_DEBUG, _LEVEL_WARN, _LEVEL_ERROR, _LEVEL_CONT = 1, 3, 4, 5  # ggml_log_level
_STDERR_FD = 2
MAX_BUFFER_LINES = 256


class NativeLog:
    """Installs itself as llama.cpp's log callback; `recent()` gives the last warning/error lines."""

    def __init__(self, keep_lines: int = 60) -> None:
        import llama_cpp.llama_cpp as native  # here, not at module load: the log parser below is used without it

        self._problems: deque[str] = deque(maxlen=keep_lines)
        self._buffer_lines: deque[str] = deque(maxlen=MAX_BUFFER_LINES)
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
        if b"buffer size =" in text:
            self._buffer_lines.append(text.decode("utf-8", errors="replace"))
        if level in (_LEVEL_WARN, _LEVEL_ERROR):
            line = text.decode("utf-8", errors="replace").strip()
            if line:
                self._problems.append(line)

    def clear(self) -> None:
        """Forget older problems and buffer sizes; what follows belongs to the next operation."""
        self._problems.clear()
        self._buffer_lines.clear()

    def recent(self) -> tuple[str, ...]:
        return tuple(self._problems)

    def allocations(self) -> tuple[DeviceAllocation, ...]:
        """What llama.cpp allocated per device since the last clear(), from its buffer-size lines."""
        return allocations_from_log(self._buffer_lines)


# --- llama.cpp's buffer-size lines ---------------------------------------------------------------------------
# src/llama-model.cpp   "load_tensors:   CPU_Mapped model buffer size =    80.00 MiB"
# src/llama-kv-cache.cpp "llama_kv_cache:        CPU KV buffer size =    20.00 MiB"
# src/llama-memory-recurrent.cpp "llama_memory_recurrent: CPU RS buffer size = ..."
# src/llama-context.cpp "llama_context:        CPU  output buffer size =     0.19 MiB"
#                       "sched_reserve:        CPU compute buffer size =    66.50 MiB"
# A compute reservation may be logged again (a re-reserve replaces the buffer): the last figure per buffer counts.
_BUFFER = re.compile(r"^\s*(\w+):\s+(\S+)\s+(model|KV|RS|output|compute) buffer size =\s*([0-9]+(?:\.[0-9]+)?) MiB")
_FIELD = {"model": "model_bytes", "KV": "kv_bytes", "RS": "other_bytes", "output": "other_bytes",
          "compute": "compute_bytes"}
HOST = "CPU"
MiB = 1024 * 1024


def device_name(buffer_name: str) -> str:
    """The device a buffer type lives on. Host buffer types ('CPU', 'CPU_Mapped', 'CPU_REPACK', 'CUDA_Host') ->
    'CPU'; a worker's 'RPC0[10.0.0.5:50052]' stays whole: RPC<k> numbers the device on its server, so two
    workers both log 'RPC0[...]' and only the address tells them apart."""
    name = buffer_name.split("[", 1)[0]
    if name.startswith("CPU") or name.endswith("_Host"):
        return HOST
    return buffer_name


def allocations_from_log(lines) -> tuple[DeviceAllocation, ...]:
    """Per-device bytes from llama.cpp's buffer-size log lines (any order; GPUs first, the host last)."""
    summed: dict[tuple[str, str], int] = defaultdict(int)
    compute: dict[str, int] = {}
    for text in "".join(lines).splitlines():
        match = _BUFFER.match(text)
        if not match:
            continue
        _, buffer, kind, mib = match.groups()
        size = round(float(mib) * MiB)
        if kind == "compute":
            compute[buffer] = size
        else:
            summed[(device_name(buffer), _FIELD[kind])] += size
    for buffer, size in compute.items():
        summed[(device_name(buffer), "compute_bytes")] += size
    devices = sorted({device for device, _ in summed}, key=lambda d: (d == HOST, d))
    return tuple(DeviceAllocation(device, **{field: size for (name, field), size in summed.items() if name == device})
                 for device in devices)
