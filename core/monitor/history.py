"""The last ten minutes of memory samples: a fixed-size ring buffer with series for charts.

Appending is O(1) (the oldest sample falls out once the buffer is full); a series is the list of
(timestamp, value) points for one figure, skipping samples where that figure is unknown (None).
This is the app's only copy of the samples: views read what they show from it. `appended` counts every
sample ever added, so a view that remembers the count it has shown asks for exactly the samples it lacks
(newest()), whatever their timestamps.
"""
from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Callable, Iterator

from core.monitor.samples import MemorySample

WINDOW_SECONDS = 600
SAMPLE_INTERVAL_SECONDS = 1.0
CAPACITY = int(WINDOW_SECONDS / SAMPLE_INTERVAL_SECONDS)

Figure = Callable[[MemorySample], "float | None"]
Point = tuple[float, float]


class MemoryHistory:
    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"A memory history holds at least one sample, not {capacity}.")
        self._samples: deque[MemorySample] = deque(maxlen=capacity)
        self._appended = 0

    @property
    def capacity(self) -> int:
        return self._samples.maxlen or 0

    @property
    def appended(self) -> int:
        """How many samples were ever appended (those fallen out included); never goes down."""
        return self._appended

    def append(self, sample: MemorySample) -> None:
        self._samples.append(sample)
        self._appended += 1

    def clear(self) -> None:
        self._samples.clear()

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[MemorySample]:
        return iter(self._samples)

    @property
    def latest(self) -> MemorySample | None:
        return self._samples[-1] if self._samples else None

    @property
    def oldest(self) -> MemorySample | None:
        return self._samples[0] if self._samples else None

    def newest(self, count: int) -> list[MemorySample]:
        """The last `count` samples still held (fewer when the history holds fewer), oldest first."""
        count = min(max(count, 0), len(self._samples))
        return list(islice(reversed(self._samples), count))[::-1]

    def series(self, figure: Figure) -> list[Point]:
        """(timestamp, value) for every sample where `figure` is known, oldest first."""
        points = []
        for sample in self._samples:
            value = figure(sample)
            if value is not None:
                points.append((sample.timestamp, float(value)))
        return points

    def peak(self, figure: Figure) -> float | None:
        """The largest known value of `figure` over the history; None when it was never known."""
        point = self.peak_point(figure)
        return None if point is None else point[1]

    def peak_point(self, figure: Figure) -> Point | None:
        """(timestamp, value) of the largest known value of `figure`; None when it was never known."""
        return max(self.series(figure), key=lambda point: point[1], default=None)


# Figures most charts want, ready to pass to series() and peak().

def engine_resident(sample: MemorySample) -> float | None:
    return sample.engine_resident_bytes


def app_resident(sample: MemorySample) -> float | None:
    return sample.app_resident_bytes


def cpu_percent(sample: MemorySample) -> float | None:
    return sample.cpu_percent


def _gpu(sample: MemorySample, index: int):
    return next((gpu for gpu in sample.gpus if gpu.index == index), None)


def gpu_used(index: int) -> Figure:
    def figure(sample: MemorySample) -> float | None:
        gpu = _gpu(sample, index)
        return None if gpu is None else gpu.used_bytes
    return figure


def gpu_app_used(index: int) -> Figure:
    def figure(sample: MemorySample) -> float | None:
        gpu = _gpu(sample, index)
        return None if gpu is None else gpu.app_used_bytes
    return figure


def gpu_utilisation(index: int) -> Figure:
    def figure(sample: MemorySample) -> float | None:
        gpu = _gpu(sample, index)
        return None if gpu is None else gpu.utilisation_percent
    return figure
