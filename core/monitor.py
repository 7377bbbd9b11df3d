"""Live memory figures for the window: host RAM, this app, the engine process, and each GPU.

sample_memory() costs a few milliseconds (psutil, NVML): call it off the UI thread, about once a second.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from core import hardware


@dataclass(frozen=True)
class GpuMemory:
    index: int
    name: str
    used_bytes: int
    total_bytes: int
    app_used_bytes: int | None  # our processes' share, when the driver tells


@dataclass(frozen=True)
class MemorySample:
    timestamp: float
    host_used_bytes: int
    host_total_bytes: int
    app_resident_bytes: int
    engine_resident_bytes: int | None  # None when no engine process runs
    gpus: tuple[GpuMemory, ...]


def resident_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def sample_memory(engine_pid: int | None = None) -> MemorySample:
    host = psutil.virtual_memory()
    pids = [os.getpid()] + ([engine_pid] if engine_pid else [])
    ours = hardware.process_gpu_bytes(pids)
    gpus = tuple(
        GpuMemory(gpu.index, gpu.name, gpu.used_bytes, gpu.total_bytes, ours.get(gpu.index))
        for gpu in hardware.read_gpu_memory()
    )
    return MemorySample(
        timestamp=time.time(),
        host_used_bytes=host.total - host.available,
        host_total_bytes=host.total,
        app_resident_bytes=resident_bytes(os.getpid()) or 0,
        engine_resident_bytes=resident_bytes(engine_pid),
        gpus=gpus,
    )
