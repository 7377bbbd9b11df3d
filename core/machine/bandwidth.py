"""Memory bandwidth: the published figure of known GPUs, and the host's measured once and cached.

Token generation reads every active weight once per token, so bandwidth (bytes per second) is what
bounds generation speed. GPU figures are vendors' public specifications (peak, not measured); the
host's figure is measured here, because DIMM speed, channel count and power limits vary too much
for a table.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from core.machine.cpu import cpu_name
from core.platform import locations

log = logging.getLogger(__name__)

GB = 1e9

# Peak memory bandwidth in GB/s from the vendors' spec sheets. Keys are normalised names (see
# _normalise); the longest key found as whole words in a device's name wins, so "rtx 4060 laptop"
# beats "rtx 4060" and "h100 pcie" beats "h100".
GPU_BANDWIDTH_GB_S: dict[str, float] = {
    # NVIDIA data centre
    "h200": 4800, "h200 nvl": 4800,
    "h100": 3350, "h100 hbm3": 3350, "h100 sxm": 3350, "h100 pcie": 2000, "h100 nvl": 3900,
    "gh200": 4000,
    "a100": 1555, "a100 sxm4 80gb": 2039, "a100 80gb pcie": 1935, "a100 pcie 80gb": 1935,
    "l40s": 864, "l40": 864, "l4": 300, "a10": 600, "a10g": 600, "t4": 320, "v100": 900,
    "rtx 6000 ada generation": 960, "rtx a6000": 768, "rtx a5000": 768, "rtx a4000": 448,
    # NVIDIA GeForce desktop
    "rtx 5090": 1792, "rtx 5080": 960, "rtx 5070 ti": 896, "rtx 5070": 672, "rtx 5060 ti": 448,
    "rtx 4090": 1008, "rtx 4080 super": 736, "rtx 4080": 717, "rtx 4070 ti super": 672,
    "rtx 4070 ti": 504, "rtx 4070 super": 504, "rtx 4070": 504, "rtx 4060 ti": 288, "rtx 4060": 272,
    "rtx 3090 ti": 1008, "rtx 3090": 936, "rtx 3080 ti": 912, "rtx 3080": 760, "rtx 3070 ti": 608,
    "rtx 3070": 448, "rtx 3060 ti": 448, "rtx 3060": 360, "rtx 2080 ti": 616, "rtx 2080": 448,
    "rtx 2070": 448, "rtx 2060": 336, "gtx 1080 ti": 484, "gtx 1080": 320, "gtx 1070": 256,
    # NVIDIA GeForce laptop
    "rtx 4090 laptop": 576, "rtx 4080 laptop": 432, "rtx 4070 laptop": 256, "rtx 4060 laptop": 256,
    "rtx 4050 laptop": 192, "rtx 3080 laptop": 448, "rtx 3070 laptop": 448, "rtx 3060 laptop": 336,
    # AMD
    "rx 7900 xtx": 960, "rx 7900 xt": 800, "rx 7900 gre": 576, "rx 7800 xt": 624, "rx 7700 xt": 432,
    "rx 7600": 288, "rx 9070 xt": 640, "rx 9070": 640, "rx 6950 xt": 576, "rx 6900 xt": 512,
    "rx 6800 xt": 512, "rx 6800": 512, "rx 6700 xt": 384, "instinct mi300x": 5300, "mi300x": 5300,
    "instinct mi250x": 3277, "mi250x": 3277, "instinct mi210": 1638, "mi210": 1638,
    # Apple Silicon (unified memory; the whole chip's figure)
    "m1": 68.25, "m1 pro": 200, "m1 max": 400, "m1 ultra": 800,
    "m2": 100, "m2 pro": 200, "m2 max": 400, "m2 ultra": 800,
    "m3": 100, "m3 pro": 150, "m3 max": 400, "m3 ultra": 819,
    "m4": 120, "m4 pro": 273, "m4 max": 546, "m5": 153,
}

_VENDOR_WORDS = re.compile(r"\b(nvidia|geforce|amd|radeon|apple|graphics|gpu)\b")
_PUNCTUATION = re.compile(r"\(tm\)|\(r\)|[-_(),/]")

SAMPLE_BYTES = 32 * 1024 * 1024  # per thread
MAX_THREADS = 4  # enough to fill a desktop's channels; caps the memory used at 256 MiB
MEASURE_SECONDS = 0.3
CACHE_FILE = "host_bandwidth.json"


def _normalise(name: str) -> str:
    text = _PUNCTUATION.sub(" ", name.lower())
    text = _VENDOR_WORDS.sub(" ", text)
    return " ".join(text.split())


def gpu_bandwidth(name: str) -> float | None:
    """Peak memory bandwidth in bytes/s of a GPU known by (part of) its name, else None."""
    padded = f" {_normalise(name)} "
    matches = [key for key in GPU_BANDWIDTH_GB_S if f" {key} " in padded]
    if not matches:
        return None
    return GPU_BANDWIDTH_GB_S[max(matches, key=len)] * GB


# ---------------------------------------------------------------------------------------------
# Host: measured once per (CPU, RAM size) and cached.

class _Rounds:
    """Copy rounds in lockstep: every thread copies once per round; rounds stop after the deadline."""

    def __init__(self, threads: int, seconds: float):
        self.seconds = seconds
        self.deadline: float | None = None  # set when every thread has its arrays ready
        self.stop = False
        self.barrier = threading.Barrier(threads, action=self._next_round)

    def _next_round(self) -> None:
        now = time.perf_counter()
        if self.deadline is None:
            self.deadline = now + self.seconds
        self.stop = now >= self.deadline


def _copy_rounds(rounds: _Rounds, sample_bytes: int) -> list[tuple[float, float]]:
    """One thread: copy its own array once per round; the (start, end) time of each copy."""
    import numpy

    source = numpy.ones(sample_bytes // 8, dtype=numpy.float64)
    target = numpy.empty_like(source)
    numpy.copyto(target, source)  # fault the pages in before timing
    spans = []
    while True:
        rounds.barrier.wait()
        if rounds.stop:
            return spans
        began = time.perf_counter()
        numpy.copyto(target, source)  # releases the GIL: the threads really run side by side
        spans.append((began, time.perf_counter()))


def _rounds_bandwidth(threads: int, seconds: float, sample_bytes: int) -> float:
    rounds = _Rounds(threads, seconds)
    with ThreadPoolExecutor(threads, thread_name_prefix="bandwidth") as pool:
        per_thread = list(pool.map(lambda _: _copy_rounds(rounds, sample_bytes), range(threads)))
    bytes_per_round = threads * 2 * (sample_bytes // 8 * 8)  # each copy reads and writes its array
    durations = [max(end for _, end in spans) - min(start for start, _ in spans) for spans in zip(*per_thread)]
    return bytes_per_round / min(durations)


def measure_host_bandwidth(seconds: float = MEASURE_SECONDS, sample_bytes: int = SAMPLE_BYTES) -> float:
    """Bytes read plus written per second by copying large arrays: one thread, then a few at once.

    Each thread copies its own 32 MiB array, well beyond its share of the CPU caches, so the copies
    stream from and to RAM. A few threads, like llama.cpp's generation, because one core cannot
    saturate a desktop's or a server's memory channels; one thread too, because on a small or busy
    machine extra threads only contend. Threads copy in lockstep rounds and the best round counts,
    so a busy machine's preemptions do not; the better of the two runs is the figure.
    """
    threads = min(MAX_THREADS, psutil.cpu_count(logical=False) or 1)
    runs = [1] if threads == 1 else [1, threads]
    return max(_rounds_bandwidth(n, seconds / len(runs), sample_bytes) for n in runs)


def _cache_key(cpu_name: str, ram_total_bytes: int) -> str:
    return f"{cpu_name}|{round(ram_total_bytes / 2**30)}GiB"


def _cache_path() -> Path:
    return locations.cache_dir() / CACHE_FILE


def _machine_identity() -> tuple[str, int]:

    return cpu_name(), psutil.virtual_memory().total


def _read_cache() -> dict[str, float]:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and v > 0}


def _write_cache(entries: dict[str, float]) -> None:
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        log.warning("could not cache the host memory bandwidth in %s: %s", path, error)


def cached_host_bandwidth() -> float | None:
    """The cached figure for this machine, without measuring; None when never measured."""
    return _read_cache().get(_cache_key(*_machine_identity()))


# One measurement at a time in this process: two at once would each see half the memory channels and cache that.
_measuring = threading.Lock()


def host_bandwidth(refresh: bool = False) -> float:
    """Host memory bandwidth in bytes/s: measured on first use (~0.3 s), then read from the cache.

    The app calls this in the background at start, so the first plans already carry a predicted speed; a caller
    that arrives while that measurement runs waits for it and reads its figure.
    """
    key = _cache_key(*_machine_identity())
    with _measuring:
        entries = _read_cache()
        if not refresh and key in entries:
            return entries[key]
        figure = measure_host_bandwidth()
        log.info("measured host memory bandwidth: %.1f GB/s (%s)", figure / GB, key)
        entries[key] = figure
        _write_cache(entries)
    return figure
