"""The model bar: which model is loaded and how, Open…, and the recently used models."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy,
                               QVBoxLayout, QWidget)

_PLACEHOLDER = "Recent models"
SEPARATOR = " · "
MORE = "…"


class FactsLabel(QLabel):
    """Facts in one line ("CPU · 30 of 30 layers on GPU · …"), cut between two facts when the line is too
    narrow, never inside one: "loaded in 0.9" without its "s" reads as another fact. text() (what screen
    readers and tests read) and the tooltip keep every fact."""

    def __init__(self, facts: Sequence[str] = ()) -> None:
        super().__init__()
        self._facts: list[str] = []
        self.set_facts(facts)

    def set_facts(self, facts: Sequence[str]) -> None:
        self._facts = list(facts)
        self.setText(SEPARATOR.join(self._facts))
        self.setToolTip(self.text() if len(self._facts) > 1 else "")

    def shown_text(self) -> str:
        """What fits in the label's width: whole facts, then "…" when some were left out."""
        metrics, width = self.fontMetrics(), self.contentsRect().width()
        full = SEPARATOR.join(self._facts)
        if metrics.horizontalAdvance(full) <= width:
            return full
        for count in range(len(self._facts) - 1, 0, -1):
            cut = SEPARATOR.join(self._facts[:count]) + SEPARATOR + MORE
            if metrics.horizontalAdvance(cut) <= width:
                return cut
        return metrics.elidedText(full, Qt.TextElideMode.ElideRight, width)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(), int(self.alignment()), self.palette(),
                                  self.isEnabled(), self.shown_text(), self.foregroundRole())


def remote_title(model_id: str, host: str) -> str:
    return f"remote: {model_id} at {host}"


class ModelBar(QWidget):
    open_requested = Signal(str)
    offload_requested = Signal()
    models_requested = Signal()
    settings_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("modelBar")
        self.title = QLabel("No model loaded")
        self.title.setObjectName("modelTitle")
        self.details = FactsLabel(["Open a .gguf file to start chatting"])
        self.details.setObjectName("modelDetails")
        # Long details may be cut on a narrow window (the tooltip keeps them whole), never widen the window.
        self.details.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.details.setMinimumWidth(80)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setFixedWidth(140)
        self.progress.setAccessibleName("Model loading progress")
        self.progress.hide()
        self.recent = QComboBox()
        self.recent.setAccessibleName("Recent models")
        self.recent.setMinimumWidth(160)
        self.models_button = QPushButton("Models…")
        self.models_button.setObjectName("primary")
        self.models_button.setAccessibleName("Find, download and choose models")
        self.models_button.setToolTip("Models that fit this machine, search, downloads and the models you have (Ctrl+K)")
        self.open_button = QPushButton("Open file…")
        self.open_button.setAccessibleName("Open a model file")
        self.offload_button = QPushButton("GPU && context…")
        self.offload_button.setAccessibleName("GPU layers, context and KV cache")
        self.offload_button.setToolTip("How many layers go on the GPU, the context length and the KV cache type")
        self.offload_button.setEnabled(False)
        self.settings_button = QPushButton("Settings…")
        self.settings_button.setAccessibleName("Settings")
        # The facts under the title: beside it, the buttons left them too little room for the load time.
        model = QVBoxLayout()
        model.setSpacing(0)
        model.addWidget(self.title)
        model.addWidget(self.details)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addLayout(model, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.recent)
        layout.addWidget(self.models_button)
        layout.addWidget(self.open_button)
        layout.addWidget(self.offload_button)
        layout.addWidget(self.settings_button)
        self.open_button.clicked.connect(self._choose_file)
        self.models_button.clicked.connect(self.models_requested)
        self.offload_button.clicked.connect(self.offload_requested)
        self.settings_button.clicked.connect(self.settings_requested)
        self.recent.activated.connect(self._recent_chosen)
        self.set_recent_models(())

    def set_recent_models(self, paths) -> None:
        self.recent.blockSignals(True)
        self.recent.clear()
        self.recent.addItem(_PLACEHOLDER, None)
        for path in paths:
            self.recent.addItem(Path(path).stem, path)
            self.recent.setItemData(self.recent.count() - 1, path, 3)  # 3 = Qt.ToolTipRole
        self.recent.setEnabled(self.recent.count() > 1)
        self.recent.blockSignals(False)

    def show_loading(self, path: str, title: str = "") -> None:
        self.title.setText(title or Path(path).stem)
        self.details.set_facts(["Loading…"])
        self.progress.setValue(0)
        self.progress.show()
        self.open_button.setEnabled(False)
        self.recent.setEnabled(False)

    def set_progress(self, fraction: float) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 100))

    def show_loaded(self, title: str, facts: Sequence[str]) -> None:
        self.title.setText(title)
        self.details.set_facts(facts)
        self.offload_button.setEnabled(True)
        self._idle()

    def show_remote(self, model_id: str, host: str, facts: Sequence[str]) -> None:
        """A model served on another computer: nothing of it to offload here."""
        self.show_loaded(remote_title(model_id, host), facts)
        self.offload_button.setEnabled(False)

    def show_unloaded(self, message: str) -> None:
        self.title.setText("No model loaded")
        self.details.set_facts([message])
        self._idle()

    def set_enabled_for_busy(self, busy: bool) -> None:
        self.open_button.setEnabled(not busy)
        self.recent.setEnabled(not busy and self.recent.count() > 1)

    def _idle(self) -> None:
        self.progress.hide()
        self.open_button.setEnabled(True)
        self.recent.setEnabled(self.recent.count() > 1)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", "GGUF models (*.gguf);;All files (*)")
        if path:
            self.open_requested.emit(path)

    def _recent_chosen(self, index: int) -> None:
        path = self.recent.itemData(index)
        self.recent.setCurrentIndex(0)
        if path:
            self.open_requested.emit(path)
