"""The closed loop: what llama.cpp really allocated and how fast a model really ran, beside what the planner said.

After every load the worker reports llama.cpp's own per-device allocations (LoadedModel.allocations, from its load
log). ``compare_load`` puts them next to the prediction the load carried; ``record_load`` keeps that in a small
history in the data folder (calibration.json), per device and backend, and ``record_speed`` does the same for measured
generation speed. From the history:

- ``learned_margin_bytes``: the GPU safety margin this machine needs — the worst excess of what a GPU really took
  (its in-use VRAM where the driver reports it, else llama.cpp's allocations) over the prediction, with headroom —
  once a GPU has been loaded MIN_LOADS times. It replaces the fixed 1 GiB when the user keeps "learned margin" on.
- ``speed_factor``: measured / predicted tokens per second for a placement (the devices a model runs on), the median
  of the last loads, for the speed model to multiply its prediction by.
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.engine.protocol import AnswerStats, LoadedModel
from core.machine.cpu import cpu_name
from core.platform import locations
from core.platform.units import format_bytes

log = logging.getLogger(__name__)

HISTORY_FILE = "calibration.json"
SCHEMA = 1
KEEP_PER_DEVICE = 20       # newest records kept per device (older machines' drivers age out)
MIN_LOADS = 3              # loads on a GPU before its margin is learned
MiB = 1024 * 1024
# Headroom on the worst excess seen: a later load may allocate a little more (another context size, fragmentation),
# and a floor for what no load showed yet (the driver's own context grows with other processes' use).
MARGIN_HEADROOM = 1.25
MARGIN_FLOOR = 128 * MiB
MARGIN_STEP = 64 * MiB
SPEED_SAMPLES = 5
MIN_SPEED_TOKENS = 16      # a shorter answer's decode rate is mostly the clock's noise
SPEED_FACTOR_RANGE = (0.02, 50.0)   # a factor beyond this is a broken measurement, not a machine
HOST = "CPU"
MINUS = "\u2212"


# --- one load: predicted beside actual ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceComparison:
    """One side of a load (the host, or the GPUs together): predicted bytes beside llama.cpp's allocations."""

    label: str                  # "Host RAM", "GPU (CUDA0)" ...
    predicted_bytes: int | None
    actual_bytes: int | None    # llama.cpp's allocations on these devices (model, KV, compute, output)
    in_use_bytes: int | None    # what the process holds there: resident memory (host), VRAM per the driver (GPU)
    in_use_label: str           # "resident memory", "VRAM in use"

    @property
    def difference_percent(self) -> float | None:
        if self.predicted_bytes is None or self.actual_bytes is None or not self.predicted_bytes:
            return None
        return 100.0 * (self.actual_bytes - self.predicted_bytes) / self.predicted_bytes

    def sentence(self) -> str:
        """'Predicted 262.0 MiB · actual 251.0 MiB (llama.cpp) · −4.2 % · resident memory 310.0 MiB'."""
        parts = [f"Predicted {format_bytes(self.predicted_bytes)}" if self.predicted_bytes is not None
                 else "No prediction"]
        parts.append(f"actual {format_bytes(self.actual_bytes)} (llama.cpp)" if self.actual_bytes is not None
                     else "actual not reported")
        percent = self.difference_percent
        if percent is not None:
            sign = "+" if percent >= 0.05 else MINUS if percent <= -0.05 else "±"
            parts.append(f"{sign}{abs(percent):.1f} %")
        if self.in_use_bytes is not None:
            parts.append(f"{self.in_use_label} {format_bytes(self.in_use_bytes)}")
        return " · ".join(parts)


@dataclass(frozen=True)
class LoadComparison:
    model_name: str
    host: DeviceComparison
    gpu: DeviceComparison | None   # None when nothing ran on a GPU
    projector: DeviceComparison | None = None   # a vision projector (llama.cpp's multimodal library loads it apart)


def compare_load(model: LoadedModel) -> LoadComparison:
    """The load's prediction (carried in its settings) beside llama.cpp's allocations, per side."""
    settings = model.settings
    host_actual = sum(a.total_bytes for a in model.allocations if a.device == HOST) if model.allocations else None
    gpus = [a for a in model.allocations if a.device != HOST]
    host = DeviceComparison("Host RAM", settings.predicted_host_bytes, host_actual, model.resident_bytes,
                            "resident memory")
    gpu = None
    if gpus or settings.predicted_gpu_bytes or model.gpu_bytes:
        names = ", ".join(a.device for a in gpus)
        gpu = DeviceComparison(f"GPU ({names})" if names else "GPU", settings.predicted_gpu_bytes,
                               sum(a.total_bytes for a in gpus) if gpus else None, model.gpu_bytes, "VRAM in use")
    return LoadComparison(os.path.basename(model.model_path), host, gpu, _projector_comparison(model))


def _projector_comparison(model: LoadedModel) -> DeviceComparison | None:
    """The projector's predicted weights and image buffer beside what the multimodal library reported at load."""
    loaded = model.projector
    if loaded is None:
        return None
    return DeviceComparison(f"Projector ({loaded.device})", model.settings.predicted_projector_bytes,
                            loaded.weights_bytes + loaded.compute_bytes, None, "")


# --- the history ----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def host_key() -> str:
    return f"{HOST} · {cpu_name()}"


def gpu_key(model: LoadedModel) -> str:
    """The GPUs a load used as llama.cpp names them (backend and index: CUDA0, Metal, RPC0 ...)."""
    return "GPU · " + " + ".join(sorted(a.device for a in model.allocations if a.device != HOST))


def speed_key(device_names: Iterable[str], host_cpu: str | None = None) -> str:
    """A placement: the devices a model runs on (the planner's names: "CPU", or a GPU's name); the host is named by
    its CPU (`host_cpu`, this machine's when not given), so a plan for another machine's profile learns nothing
    from this one's host."""
    host = f"{HOST} · {host_cpu}" if host_cpu else host_key()
    names = sorted({host if name == HOST else name for name in device_names})
    return " + ".join(names) or host


def history_path() -> Path:
    return locations.data_dir() / HISTORY_FILE


_lock = threading.Lock()


def _read() -> dict:
    try:
        data = json.loads(history_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"schema": SCHEMA, "memory": {}, "speed": {}}
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return {"schema": SCHEMA, "memory": {}, "speed": {}}
    data.setdefault("memory", {})
    data.setdefault("speed", {})
    return data


def _write(data: dict) -> None:
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        log.warning("could not keep the calibration history in %s: %s", path, error)


def _append(section: str, key: str, row: list) -> None:
    with _lock:
        data = _read()
        rows = data[section].setdefault(key, [])
        rows.append(row)
        del rows[:-KEEP_PER_DEVICE]
        _write(data)


def record_load(model: LoadedModel) -> LoadComparison:
    """Keep this load's predicted and actual bytes per side; a load without llama.cpp's figures is not kept."""
    comparison = compare_load(model)
    now = time.time()
    if comparison.host.predicted_bytes is not None and comparison.host.actual_bytes is not None:
        _append("memory", host_key(), [comparison.host.predicted_bytes, comparison.host.actual_bytes, None, now])
    gpu = comparison.gpu
    if gpu is not None and gpu.predicted_bytes is not None and gpu.actual_bytes is not None:
        _append("memory", gpu_key(model), [gpu.predicted_bytes, gpu.actual_bytes, gpu.in_use_bytes, now])
    return comparison


def record_speed(device_names: Iterable[str], predicted_tokens_per_second: float,
                 measured_tokens_per_second: float) -> None:
    """Keep a measured generation speed beside the speed model's uncalibrated prediction for that placement."""
    if predicted_tokens_per_second > 0 and measured_tokens_per_second > 0:
        _append("speed", speed_key(device_names), [predicted_tokens_per_second, measured_tokens_per_second,
                                                   time.time()])


def record_answer_speed(device_names: Iterable[str], predicted_tokens_per_second: float | None,
                        stats: AnswerStats) -> bool:
    """Keep an answer's decode rate for this placement when it says something: enough tokens, not cancelled, and a
    prediction to compare it with. True when it was kept."""
    if predicted_tokens_per_second is None or stats.stop_reason == "cancelled":
        return False
    if stats.completion_tokens < MIN_SPEED_TOKENS or stats.tokens_per_second <= 0:
        return False
    record_speed(device_names, predicted_tokens_per_second, stats.tokens_per_second)
    return True


def speed_factor(device_names: Iterable[str], host_cpu: str | None = None) -> float:
    """Measured / predicted tokens per second on this placement (median of the last loads); 1.0 when never measured.
    The speed model multiplies its prediction by this."""
    rows = _read()["speed"].get(speed_key(device_names, host_cpu), [])[-SPEED_SAMPLES:]
    ratios = [measured / predicted for predicted, measured, *_ in rows if predicted > 0 and measured > 0]
    if not ratios:
        return 1.0
    low, high = SPEED_FACTOR_RANGE
    return min(max(statistics.median(ratios), low), high)


def learned_margin_bytes() -> int | None:
    """The GPU margin this machine's loads call for (the largest over its GPUs); None until a GPU has MIN_LOADS."""
    margins = []
    for key, rows in _read()["memory"].items():
        if not key.startswith("GPU") or len(rows) < MIN_LOADS:
            continue
        excess = max(max(in_use if in_use is not None else actual, actual) - predicted
                     for predicted, actual, in_use, *_ in rows)
        wanted = max(excess, 0) * MARGIN_HEADROOM + MARGIN_FLOOR
        margins.append(int(-(-wanted // MARGIN_STEP) * MARGIN_STEP))
    return max(margins) if margins else None


def loads_recorded() -> int:
    return sum(len(rows) for rows in _read()["memory"].values())


def effective_margin_bytes(configured_bytes: int, use_learned: bool) -> int:
    """The GPU margin a plan keeps free: the learned one when the user lets it and it is known, else the setting."""
    learned = learned_margin_bytes() if use_learned else None
    return configured_bytes if learned is None else learned


def reset() -> None:
    """Forget every recorded load and speed on this machine."""
    with _lock:
        try:
            history_path().unlink()
        except FileNotFoundError:
            pass
