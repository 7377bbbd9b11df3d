"""Live memory figures for the window: host RAM, this app, the engine process, and each GPU.

sample_memory() costs a few milliseconds (psutil, NVML): call it off the UI thread, about once a second.

Every figure is split so that its parts never go negative and always add up to the total:
host RAM = engine + app + others + free (RamSplit); each GPU's memory = this app + others + free
(VramSplit). What a load allocated beside its prediction is core.fit.calibration's (compare_load).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import psutil

from core.machine import hardware
from core.machine.hardware import GpuInfo

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Splits: parts of a total, never negative, always summing to it


@dataclass(frozen=True)
class VramSplit:
    """One GPU's memory: used by this app (app + engine), by other processes, free."""

    app_bytes: int | None  # None when the driver does not tell per process (then others holds it all)
    others_bytes: int
    free_bytes: int

    @property
    def total_bytes(self) -> int:
        return (self.app_bytes or 0) + self.others_bytes + self.free_bytes


@dataclass(frozen=True)
class RamSplit:
    """Host RAM: resident in the engine process, in the app (GUI) process, in other processes, free."""

    engine_bytes: int
    app_bytes: int
    others_bytes: int
    free_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.engine_bytes + self.app_bytes + self.others_bytes + self.free_bytes

    @property
    def used_bytes(self) -> int:
        return self.total_bytes - self.free_bytes


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def split_vram(total_bytes: int, used_bytes: int, app_used_bytes: int | None) -> VramSplit:
    total = max(total_bytes, 0)
    used = _clamp(used_bytes, 0, total)
    app = None if app_used_bytes is None else _clamp(app_used_bytes, 0, used)
    return VramSplit(app_bytes=app, others_bytes=used - (app or 0), free_bytes=total - used)


def split_ram(total_bytes: int, used_bytes: int, engine_bytes: int | None, app_bytes: int) -> RamSplit:
    """`used_bytes` is total minus available. Resident sets count mapped file pages (a model's mmapped
    weights) that the kernel also counts as reclaimable cache, so when engine + app exceed `used`, the
    processes' own figures win and `used` grows to hold them (never past the total)."""
    total = max(total_bytes, 0)
    engine_wanted, app_wanted = max(engine_bytes or 0, 0), max(app_bytes, 0)
    used = _clamp(max(used_bytes, engine_wanted + app_wanted), 0, total)
    engine = min(engine_wanted, used)
    app = min(app_wanted, used - engine)
    return RamSplit(engine_bytes=engine, app_bytes=app, others_bytes=used - engine - app, free_bytes=total - used)


# ---------------------------------------------------------------------------------------------
# One sample


@dataclass(frozen=True)
class GpuMemory:
    index: int
    name: str
    used_bytes: int
    total_bytes: int
    app_used_bytes: int | None  # our processes' share (app + engine), when the driver tells
    utilisation_percent: float | None = None  # how busy the GPU was lately (NVML), None when unknown
    unified_memory: bool = False  # Apple: the GPU's memory is host RAM

    @property
    def split(self) -> VramSplit:
        return split_vram(self.total_bytes, self.used_bytes, self.app_used_bytes)


@dataclass(frozen=True)
class MemorySample:
    timestamp: float  # seconds since the epoch
    host_used_bytes: int  # total minus available
    host_total_bytes: int
    app_resident_bytes: int
    engine_resident_bytes: int | None  # None when no engine process runs
    gpus: tuple[GpuMemory, ...]
    cpu_percent: float | None = None  # the whole machine, since the previous sample; None at first

    @property
    def ram(self) -> RamSplit:
        return split_ram(self.host_total_bytes, self.host_used_bytes, self.engine_resident_bytes,
                         self.app_resident_bytes)


def gpu_memory(info: GpuInfo, app_used_bytes: int | None = None,
               utilisation_percent: float | None = None) -> GpuMemory:
    """A GPU's line in a sample, from the hardware probe's figures and our processes' share."""
    return GpuMemory(index=info.index, name=info.name, used_bytes=info.used_bytes, total_bytes=info.total_bytes,
                     app_used_bytes=app_used_bytes, utilisation_percent=utilisation_percent,
                     unified_memory=info.unified_memory)


# ---------------------------------------------------------------------------------------------
# Probes


def resident_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def gpu_utilisation() -> dict[int, float]:
    """Percent of the last sample period each NVIDIA GPU was busy, by NVML index; {} when unknown."""
    # hardware owns NVML's start-up and device handles; it has no public accessor for them yet.
    nvml, handles = hardware._NVML.handles()  # noqa: SLF001
    busy: dict[int, float] = {}
    for index, handle in enumerate(handles):
        try:
            busy[index] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception as error:  # NotSupported on some boards, GPU lost, ...
            log.debug("NVML could not read GPU %d utilisation: %s", index, error)
    return busy


class _CpuMeter:
    """psutil.cpu_percent(interval=None) without blocking: the first reading only starts the clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False

    def percent(self) -> float | None:
        with self._lock:
            value = psutil.cpu_percent(interval=None)
            if not self._started:
                self._started = True
                return None
            return value


_CPU = _CpuMeter()


def read_gpus(pids: list[int]) -> tuple[GpuMemory, ...]:
    infos = hardware.read_gpu_memory()
    if not any(info.vendor == "nvidia" for info in infos):
        return tuple(gpu_memory(info) for info in infos)
    ours = hardware.process_gpu_bytes(pids)
    busy = gpu_utilisation()
    return tuple(gpu_memory(info, ours.get(info.index), busy.get(info.index)) for info in infos)


def sample_memory(engine_pid: int | None = None) -> MemorySample:
    host = psutil.virtual_memory()
    pids = [os.getpid()] + ([engine_pid] if engine_pid else [])
    return MemorySample(
        timestamp=time.time(),
        host_used_bytes=host.total - host.available,
        host_total_bytes=host.total,
        app_resident_bytes=resident_bytes(os.getpid()) or 0,
        engine_resident_bytes=resident_bytes(engine_pid),
        gpus=read_gpus(pids),
        cpu_percent=_CPU.percent(),
    )
