"""core.monitor.samples and core.monitor.history: real figures from this machine, splits that always add up,
and the ten-minute ring buffer."""
from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from core.machine.hardware import GpuInfo
from core.monitor.history import CAPACITY, MemoryHistory, engine_resident, gpu_app_used, gpu_used
from core.monitor.samples import GpuMemory, MemorySample, gpu_memory, sample_memory, split_ram, split_vram

GIB, MIB = 2**30, 2**20


@pytest.fixture
def sleeping_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(32 * 2**20); time.sleep(60)"])
    try:
        psutil.Process(child.pid).memory_info()
        yield child
    finally:
        child.kill()
        child.wait()


def sample(t: float = 0.0, engine: int | None = None, gpus: tuple[GpuMemory, ...] = ()) -> MemorySample:
    return MemorySample(timestamp=t, host_used_bytes=8 * GIB, host_total_bytes=16 * GIB,
                        app_resident_bytes=200 * MIB, engine_resident_bytes=engine, gpus=gpus)


# --- sampling this machine ---

def test_sample_memory_measures_this_machine_and_the_engine_process(sleeping_child):
    import time

    time.sleep(0.3)  # let the child allocate its 32 MiB
    first = sample_memory(sleeping_child.pid)
    second = sample_memory(sleeping_child.pid)
    host = psutil.virtual_memory()
    assert first.host_total_bytes == host.total
    assert 0 < first.host_used_bytes <= first.host_total_bytes
    assert first.app_resident_bytes == pytest.approx(psutil.Process(os.getpid()).memory_info().rss, rel=0.2)
    assert first.engine_resident_bytes is not None and first.engine_resident_bytes > 30 * MIB
    assert second.cpu_percent is not None and 0.0 <= second.cpu_percent <= 100.0
    assert second.timestamp >= first.timestamp
    ram = second.ram
    assert ram.total_bytes == second.host_total_bytes
    assert ram.engine_bytes == second.engine_resident_bytes


def test_sample_memory_without_an_engine():
    result = sample_memory(None)
    assert result.engine_resident_bytes is None
    assert result.ram.engine_bytes == 0
    assert result.ram.total_bytes == result.host_total_bytes


def test_a_gone_engine_process_reads_as_not_running(sleeping_child):
    sleeping_child.kill()
    sleeping_child.wait()
    assert sample_memory(sleeping_child.pid).engine_resident_bytes is None


# --- splits ---

@pytest.mark.parametrize("total, used, ours", [
    (24 * GIB, 10 * GIB, 6 * GIB),
    (24 * GIB, 10 * GIB, 0),
    (24 * GIB, 10 * GIB, 12 * GIB),   # the driver's per-process figure above its own "used"
    (24 * GIB, 30 * GIB, 6 * GIB),    # "used" above the total
    (24 * GIB, -5, 6 * GIB),
    (24 * GIB, 10 * GIB, -1),
    (24 * GIB, 10 * GIB, None),       # per-process figure unknown
    (0, 0, None),
])
def test_vram_split_is_never_negative_and_adds_up(total, used, ours):
    split = split_vram(total, used, ours)
    assert min(split.app_bytes or 0, split.others_bytes, split.free_bytes) >= 0
    assert split.total_bytes == total


def test_vram_split_figures():
    split = split_vram(24 * GIB, 10 * GIB, 6 * GIB)
    assert (split.app_bytes, split.others_bytes, split.free_bytes) == (6 * GIB, 4 * GIB, 14 * GIB)
    unknown = split_vram(24 * GIB, 10 * GIB, None)
    assert (unknown.app_bytes, unknown.others_bytes, unknown.free_bytes) == (None, 10 * GIB, 14 * GIB)


@pytest.mark.parametrize("total, used, engine, app", [
    (64 * GIB, 20 * GIB, 6 * GIB, 300 * MIB),
    (64 * GIB, 20 * GIB, None, 300 * MIB),
    (64 * GIB, 2 * GIB, 6 * GIB, 300 * MIB),    # mmapped weights count in RSS but as cache in "used"
    (64 * GIB, 2 * GIB, 70 * GIB, 300 * MIB),   # more than the machine has
    (64 * GIB, 80 * GIB, 1 * GIB, 300 * MIB),
    (64 * GIB, -1, -1, -1),
])
def test_ram_split_is_never_negative_and_adds_up(total, used, engine, app):
    split = split_ram(total, used, engine, app)
    assert min(split.engine_bytes, split.app_bytes, split.others_bytes, split.free_bytes) >= 0
    assert split.total_bytes == total


def test_ram_split_figures():
    split = split_ram(64 * GIB, 20 * GIB, 6 * GIB, 512 * MIB)
    assert split.engine_bytes == 6 * GIB
    assert split.app_bytes == 512 * MIB
    assert split.others_bytes == 20 * GIB - 6 * GIB - 512 * MIB
    assert split.free_bytes == 44 * GIB
    grown = split_ram(64 * GIB, 2 * GIB, 6 * GIB, 512 * MIB)
    assert (grown.engine_bytes, grown.others_bytes, grown.used_bytes) == (6 * GIB, 0, 6 * GIB + 512 * MIB)


def test_gpu_line_from_hand_built_gpu_figures():
    info = GpuInfo(index=1, name="NVIDIA GeForce RTX 4090", vendor="nvidia", total_bytes=24 * GIB,
                   free_bytes=9 * GIB, used_bytes=15 * GIB)
    gpu = gpu_memory(info, app_used_bytes=14 * GIB, utilisation_percent=87.0)
    assert (gpu.index, gpu.name, gpu.used_bytes, gpu.total_bytes) == (1, "NVIDIA GeForce RTX 4090", 15 * GIB, 24 * GIB)
    assert gpu.utilisation_percent == 87.0
    assert (gpu.split.app_bytes, gpu.split.others_bytes, gpu.split.free_bytes) == (14 * GIB, 1 * GIB, 9 * GIB)
    apple = GpuInfo(index=0, name="Apple M2 Pro", vendor="apple", total_bytes=21 * GIB, free_bytes=12 * GIB,
                    used_bytes=9 * GIB, unified_memory=True)
    shared = gpu_memory(apple)
    assert shared.unified_memory and shared.app_used_bytes is None and shared.utilisation_percent is None
    assert shared.split.others_bytes == 9 * GIB


# --- history ---

def test_history_wraps_around_after_ten_minutes():
    history = MemoryHistory()
    assert history.capacity == CAPACITY == 600
    for second in range(700):
        history.append(sample(float(second), engine=second * MIB))
    assert len(history) == 600
    assert [s.timestamp for s in history][:2] == [100.0, 101.0]
    assert history.latest.timestamp == 699.0
    points = history.series(engine_resident)
    assert len(points) == 600 and points[0] == (100.0, 100.0 * MIB) and points[-1] == (699.0, 699.0 * MIB)
    assert history.peak(engine_resident) == 699 * MIB


def test_history_series_skip_unknown_figures():
    history = MemoryHistory(capacity=4)
    gpu = GpuMemory(0, "GPU", 3 * GIB, 8 * GIB, None)
    history.append(sample(1.0, engine=None, gpus=(gpu,)))
    history.append(sample(2.0, engine=5 * MIB, gpus=(GpuMemory(0, "GPU", 4 * GIB, 8 * GIB, 2 * GIB),)))
    history.append(sample(3.0, engine=6 * MIB))
    assert history.series(engine_resident) == [(2.0, 5.0 * MIB), (3.0, 6.0 * MIB)]
    assert history.series(gpu_used(0)) == [(1.0, 3.0 * GIB), (2.0, 4.0 * GIB)]
    assert history.series(gpu_app_used(0)) == [(2.0, 2.0 * GIB)]
    assert history.peak(gpu_app_used(1)) is None
    history.clear()
    assert len(history) == 0 and history.latest is None


def test_a_reader_gets_exactly_the_samples_it_has_not_read():
    history = MemoryHistory(capacity=3)
    assert history.newest(5) == [] and history.oldest is None and history.appended == 0
    for second in range(4):
        history.append(sample(float(second), engine=(10 - second) * MIB))
    read = history.appended
    assert read == 4 and [s.timestamp for s in history.newest(2)] == [2.0, 3.0]
    history.append(sample(3.0, engine=MIB))  # the same timestamp again is still a new sample
    assert [(s.timestamp, s.engine_resident_bytes) for s in history.newest(history.appended - read)] == [(3.0, MIB)]
    assert [s.timestamp for s in history.newest(100)] == [2.0, 3.0, 3.0]  # only what is still held
    assert history.oldest.timestamp == 2.0
    assert history.peak_point(engine_resident) == (2.0, 8.0 * MIB)  # the 10 and 9 MiB samples fell out
    history.clear()
    assert history.appended == 5 and history.newest(1) == [] and history.peak_point(engine_resident) is None


def test_history_needs_room_for_a_sample():
    with pytest.raises(ValueError):
        MemoryHistory(capacity=0)
