"""The 1 Hz memory sampler: a QTimer that runs core.monitor.samples.sample_memory off the UI thread.

    sampler = MemorySampler(lambda: session.engine_pid, parent=window)
    sampler.sampled.connect(dashboard.show_sample)
    sampler.start()

A sample that is still running when the timer fires again is not doubled: that tick is skipped.
"""
from __future__ import annotations

import logging
from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from core.monitor.samples import MemorySample, sample_memory
from desktop.tasks import Task

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_MS = 1000


class MemorySampler(QObject):
    sampled = Signal(object)  # MemorySample, on the UI thread

    def __init__(self, engine_pid: Callable[[], int | None], parent: QObject | None = None, *,
                 interval_ms: int = SAMPLE_INTERVAL_MS,
                 sample: Callable[[int | None], MemorySample] = sample_memory) -> None:
        super().__init__(parent)
        self._engine_pid = engine_pid
        self._sample = sample
        self._running = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.sample_now)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def active(self) -> bool:
        return self._timer.isActive()

    def sample_now(self) -> None:
        """Take one sample in the background; nothing when one is already under way."""
        if self._running:
            return
        self._running = True
        (Task(self._sample, self._engine_pid())
         .success(self._deliver)
         .failure(self._failed)
         .run_in_background())

    def _deliver(self, sample: MemorySample) -> None:
        self._running = False
        self.sampled.emit(sample)

    def _failed(self, error: BaseException) -> None:
        self._running = False
        log.warning("memory sample failed: %s", error)
