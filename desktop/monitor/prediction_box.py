""""Prediction vs actual": after each load, what the planner predicted beside what llama.cpp allocated (its own
per-device figures from the load log), with the process's resident memory and VRAM in use shown as what they are."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from core.fit.calibration import LoadComparison

NO_MODEL = "No model loaded"
CPU_ONLY = "Not used — every layer runs on the CPU"
HOST_TIP = ("Host RAM: the planner's prediction for this load against what llama.cpp allocated in host memory "
            "(model, KV cache, compute and output buffers, from its load log). Resident memory is the engine "
            "process's whole footprint, shown for reference: it counts only the pages of the model file read so far "
            "and the libraries, so it is not the figure to compare.")
PROJECTOR_TIP = ("Projector: a vision model's image encoder, loaded by llama.cpp's multimodal library beside the "
                 "model. The planner's prediction (its weights and the buffer for encoding one image) against what "
                 "that library reported at load.")
GPU_TIP = ("GPU: the planner's prediction against what llama.cpp allocated on the GPU(s). VRAM in use is what the "
           "driver reports for the engine process (its own context included), where it reports memory per process.")


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
        self.host_label = _value_label("Host RAM predicted vs actual", HOST_TIP)
        self.gpu_label = _value_label("GPU memory predicted vs actual", GPU_TIP)
        self.projector_label = _value_label("Projector memory predicted vs actual", PROJECTOR_TIP)
        self._figures = QWidget()
        form = QFormLayout(self._figures)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Host RAM", self.host_label)
        form.addRow("GPU", self.gpu_label)
        form.addRow("Projector", self.projector_label)
        self._form = form
        layout = QVBoxLayout(self)
        layout.addWidget(self.model_label)
        layout.addWidget(self._figures)
        self.show_comparison(None)

    def show_comparison(self, comparison: LoadComparison | None) -> None:
        self._figures.setVisible(comparison is not None)
        if comparison is None:
            self.model_label.setText(NO_MODEL)
            self.host_label.setText("")
            self.gpu_label.setText("")
            self._form.setRowVisible(self.projector_label, False)
            return
        self.model_label.setText(comparison.model_name)
        self.host_label.setText(comparison.host.sentence())
        gpu = comparison.gpu.sentence() if comparison.gpu else CPU_ONLY
        self.gpu_label.setText(gpu)
        projector = comparison.projector
        self._form.setRowVisible(self.projector_label, projector is not None)
        if projector is not None:
            self._form.labelForField(self.projector_label).setText(projector.label)   # "Projector (CPU)"
            self.projector_label.setText(projector.sentence())
