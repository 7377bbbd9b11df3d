""""Prediction vs actual": after each load, what the planner predicted beside what the load took."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from core.monitor.samples import PredictionComparison

NO_MODEL = "No model loaded"
HOST_TIP = ("Host RAM: the planner's prediction for this load against the engine process's resident "
            "memory growth while loading.")
GPU_TIP = ("GPU: the planner's prediction against the engine process's VRAM as the driver reports it "
           "(not measured where the driver does not report memory per process).")


def _value_label(name: str, tip: str) -> QLabel:
    label = QLabel("")
    label.setAccessibleName(name)
    label.setToolTip(tip)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class PredictionBox(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Prediction vs actual", parent)
        self.setObjectName("predictionBox")
        self.setAccessibleName("Prediction vs actual")
        self.model_label = QLabel(NO_MODEL)
        self.model_label.setObjectName("predictionModel")
        self.model_label.setAccessibleName("Loaded model")
        self.model_label.setWordWrap(True)
        self.host_label = _value_label("Host RAM predicted vs measured", HOST_TIP)
        self.gpu_label = _value_label("GPU memory predicted vs measured", GPU_TIP)
        self._figures = QWidget()
        form = QFormLayout(self._figures)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Host RAM", self.host_label)
        form.addRow("GPU", self.gpu_label)
        layout = QVBoxLayout(self)
        layout.addWidget(self.model_label)
        layout.addWidget(self._figures)
        self.show_comparison(None)

    def show_comparison(self, comparison: PredictionComparison | None) -> None:
        self._figures.setVisible(comparison is not None)
        if comparison is None:
            self.model_label.setText(NO_MODEL)
            self.host_label.setText("")
            self.gpu_label.setText("")
            return
        self.model_label.setText(comparison.model_name)
        self.host_label.setText(comparison.host.sentence())
        gpu = comparison.gpu.sentence() if comparison.gpu else "Not used — every layer runs on the CPU"
        self.gpu_label.setText(gpu)
