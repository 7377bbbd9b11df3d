"""The context-length control: a slider over round steps (512 … the trained context) beside a spin box
for any exact value. The offload dialog and the picker's details pane both use it."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QSlider, QSpinBox, QWidget

from core.fit.choice import context_steps


class ContextControl(QWidget):
    changed = Signal(int)  # the user moved the slider or typed a value; not emitted by set_range()

    def __init__(self, parent: QWidget | None = None, *, ticks: bool = False) -> None:
        super().__init__(parent)
        self._steps: tuple[int, ...] = (512,)
        self._quiet = False  # True while the control moves its own parts
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setAccessibleName("Context length steps")
        self.slider.setPageStep(1)
        if ticks:
            self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.spin = QSpinBox()
        self.spin.setAccessibleName("Context length in tokens")
        self.spin.setSingleStep(512)
        self.spin.setSuffix(" tokens")
        self.spin.setGroupSeparatorShown(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)
        self.setFocusProxy(self.spin)
        self.slider.valueChanged.connect(self._step_moved)
        self.spin.valueChanged.connect(self._typed)

    def value(self) -> int:
        return self.spin.value()

    @property
    def steps(self) -> tuple[int, ...]:
        return self._steps

    def set_range(self, trained_context: int, value: int) -> None:
        """Steps up to the model's trained context, showing `value` (kept inside the range)."""
        self._quiet = True
        self._steps = context_steps(trained_context)
        self.slider.setRange(0, len(self._steps) - 1)
        self.spin.setRange(self._steps[0], self._steps[-1])
        self.spin.setValue(min(value, self._steps[-1]))
        self.slider.setValue(self._step_index(self.spin.value()))
        self._quiet = False

    def _step_index(self, context: int) -> int:
        return max(i for i, step in enumerate(self._steps) if step <= context or i == 0)

    def _step_moved(self, index: int) -> None:
        if not self._quiet:
            self.spin.setValue(self._steps[index])  # emits through _typed

    def _typed(self, value: int) -> None:
        if self._quiet:
            return
        self._quiet = True
        self.slider.setValue(self._step_index(value))
        self._quiet = False
        self.changed.emit(value)
