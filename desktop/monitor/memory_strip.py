"""A one-line live view of memory: host RAM, this app, the engine, each GPU, and the last answer's speed."""
from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

from core.monitor.samples import MemorySample
from core.platform.units import count_of, format_bytes


def _meter(name: str) -> QProgressBar:
    meter = QProgressBar()
    meter.setRange(0, 1000)
    meter.setFixedWidth(110)
    meter.setTextVisible(False)
    meter.setAccessibleName(name)
    return meter


class MemoryStrip(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("memoryStrip")
        self.ram_label = QLabel("RAM —")
        self.ram_meter = _meter("Host memory in use")
        self.app_label = QLabel("App —")
        self.engine_label = QLabel("Engine —")
        self.gpu_label = QLabel("GPU: none")
        self.speed_label = QLabel("Last answer —")
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(10, 4, 10, 4)
        for widget in (self.ram_label, self.ram_meter, self.app_label, self.engine_label, self.gpu_label):
            self._layout.addWidget(widget)
        self._layout.addStretch(1)
        self._layout.addWidget(self.speed_label)
        for label in (self.ram_label, self.app_label, self.engine_label, self.gpu_label, self.speed_label):
            label.setAccessibleName(label.text().split(" ")[0])

    def show_sample(self, sample: MemorySample) -> None:
        self.ram_label.setText(f"RAM {format_bytes(sample.host_used_bytes)} / {format_bytes(sample.host_total_bytes)}")
        self.ram_meter.setValue(int(1000 * sample.host_used_bytes / max(sample.host_total_bytes, 1)))
        self.app_label.setText(f"App {format_bytes(sample.app_resident_bytes)}")
        engine = sample.engine_resident_bytes
        self.engine_label.setText(f"Engine {format_bytes(engine)}" if engine is not None else "Engine not running")
        self.gpu_label.setText(self._gpu_text(sample))

    def show_speed(self, tokens_per_second: float, tokens: int) -> None:
        """The last answer's decode speed; one token has no rate to measure (the engine reports 0, which would read
        as a stalled answer), so its length is shown instead."""
        if tokens_per_second > 0:
            self.speed_label.setText(f"Last answer {tokens_per_second:.1f} tok/s")
        else:
            self.speed_label.setText(f"Last answer {count_of(tokens, 'token')}")

    @staticmethod
    def _gpu_text(sample: MemorySample) -> str:
        if not sample.gpus:
            return "GPU: none"
        parts = []
        for gpu in sample.gpus:
            ours = f" (ours {format_bytes(gpu.app_used_bytes)})" if gpu.app_used_bytes else ""
            parts.append(f"GPU{gpu.index} {format_bytes(gpu.used_bytes)} / {format_bytes(gpu.total_bytes)}{ours}")
        return " · ".join(parts)
