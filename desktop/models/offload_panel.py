"""The offload panel: Auto (the planner) or a manual GPU-layer count, for a MoE model how many layers keep their
experts on the CPU (Auto or a count), context, KV cache type and flash attention, with the planner's verdict,
placement and a per-device memory bar that follow every move BEFORE a reload.

    panel = OffloadPanel()
    panel.show_for(model_info, hardware_snapshot, current_choice, safety_margin_bytes)
    panel.apply_requested.connect(reload_with)              # OffloadChoice (core.fit.choice)

The panel plans nothing itself: core.fit.choice.plan_choice runs in a Task on a short debounce and
the panel shows the Plan it returns. OffloadDialog wraps the panel in a dialog for the model bar.
"""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QFormLayout, QFrame, QHBoxLayout,
                               QLabel, QPushButton, QRadioButton, QSlider, QSpinBox, QVBoxLayout, QWidget)

from core.gguf.reader import ModelInfo
from core.machine.hardware import HardwareSnapshot
from core.fit.choice import (KV_TYPE_LABELS, OffloadChoice, has_experts, manual_layers, normalized,
                             offloadable_layers, plan_choice, trained_context)
from core.gguf.kv_types import needs_flash_attention
from core.fit.planner import CPU_ONLY, DEFAULT_GPU_MARGIN, FULL, TOO_LARGE, DevicePlan, Plan
from core.settings import ALL_GPU_LAYERS, KV_TYPES
from core.platform.units import format_bytes
from desktop.widgets.context_control import ContextControl
from desktop.widgets.stacked_bar import EMPTY_COLOR, BarPart, MemoryBarSection
from desktop.tasks import Task

DEBOUNCE_MS = 120
WEIGHTS_COLOR = "#2f6fdb"
KV_COLOR = "#8e5cd9"
COMPUTE_COLOR = "#e0a030"
RESERVED_COLOR = "#a9b2bc"
FLASH_NEEDED = "A quantized KV cache needs flash attention, so it stays on."
NO_GPU = "No usable GPU on this machine: every layer runs on the CPU."
AUTO_EXPERTS = -1   # the experts spin box's lowest value, shown as "Auto": the planner chooses
EXPERTS_HELP = ("The expert tensors of the first layers stay in system RAM; attention and the KV cache of every "
                "layer stay on the GPU. Only the experts in use are read for each token, so this often runs faster "
                "than putting whole layers on the CPU.")


# --- what the bars and labels say (figures from core.fit.planner's DevicePlan) ---

def device_title(device: DevicePlan, index: int) -> str:
    return "Host RAM" if device.kind == "host" else f"GPU {index} · {device.name}"


def device_parts(device: DevicePlan) -> list[BarPart]:
    """Weights, KV cache, compute, what stays free of the usable memory, and the margin kept free."""
    return [BarPart("Weights", device.weights_bytes, WEIGHTS_COLOR, dark=True),
            BarPart("KV cache", device.kv_bytes, KV_COLOR, dark=True),
            BarPart("Compute", device.compute_bytes + device.other_bytes, COMPUTE_COLOR),
            BarPart("Free", max(device.budget_bytes - device.total_bytes, 0), EMPTY_COLOR),
            BarPart("Kept free", max(device.free_bytes - device.budget_bytes, 0), RESERVED_COLOR)]


def device_figure(device: DevicePlan) -> str:
    usage = f"{format_bytes(device.total_bytes)} of {format_bytes(device.budget_bytes)} usable"
    if device.fits:
        return usage
    return f"{usage} · over by {format_bytes(device.total_bytes - device.budget_bytes)}"


def verdict_kind(plan: Plan) -> str:
    return {FULL: "full", CPU_ONLY: "cpu", TOO_LARGE: "too-large"}.get(plan.verdict, "partial")


UNKNOWN_SPEED = "not known yet: no memory-bandwidth figure for a device it runs on"


def speed_text(plan: Plan) -> str:
    if not plan.fits:
        return "Predicted speed: — (it does not fit)"
    if plan.predicted_tokens_per_second is None:
        return f"Predicted speed: {UNKNOWN_SPEED}"
    text = f"Predicted speed: about {plan.predicted_tokens_per_second:.0f} tokens/s"
    if plan.predicted_prompt_tokens_per_second:
        text += f" · prompt about {plan.predicted_prompt_tokens_per_second:.0f} tokens/s"
    return text


def kv_text(plan: Plan) -> str:
    total = sum(device.kv_bytes for device in plan.devices)
    return f"KV cache: {format_bytes(total)} ({plan.kv_type}, {plan.context:,} tokens)"


def placement_text(plan: Plan) -> str:
    """Where the layers (and a MoE model's experts) go, for a plan that fits; nothing for one that does not."""
    return plan.placement if plan.fits else ""


def experts_text(plan: Plan, auto: bool) -> str:
    """What the experts control leaves to the planner: the number of layers whose experts it put on the CPU."""
    if not auto:
        return ""
    chosen = f"{plan.cpu_expert_layers} layers" if plan.cpu_expert_layers else "none"
    return f"{chosen} · chosen by the planner"


def layers_text(value: int, n_layers: int, auto: bool) -> str:
    text = f"{value} of {n_layers}" + (" (all)" if value == n_layers else "")
    return f"{text} · chosen by the planner" if auto else text


def _label(name: str, object_name: str = "", *, wrap: bool = False) -> QLabel:
    label = QLabel("")
    label.setAccessibleName(name)
    if object_name:
        label.setObjectName(object_name)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class OffloadPanel(QWidget):
    apply_requested = Signal(object)   # OffloadChoice
    planned = Signal(object)           # the Plan now shown

    def __init__(self, parent: QWidget | None = None, *, debounce_ms: int = DEBOUNCE_MS) -> None:
        super().__init__(parent)
        self.setObjectName("offloadPanel")
        self.setAccessibleName("Offload settings")
        self.model: ModelInfo | None = None
        self.hardware: HardwareSnapshot | None = None
        self.margin = DEFAULT_GPU_MARGIN
        self.plan: Plan | None = None
        self.sections: list[MemoryBarSection] = []
        self._generation = 0
        self._quiet = False  # True while the panel moves its own controls
        self._timer = QTimer(self, singleShot=True, interval=debounce_ms)
        self._timer.timeout.connect(self._plan_now)
        self._build_controls()
        self._build_results()
        self._lay_out()
        self._connect()

    # --- building ---

    def _build_controls(self) -> None:
        self.heading = _label("Model", "offloadHeading", wrap=True)
        self.auto_button = QRadioButton("&Auto — the planner chooses")
        self.auto_button.setAccessibleName("Auto: the planner chooses the GPU layers")
        self.manual_button = QRadioButton("&Manual")
        self.manual_button.setAccessibleName("Manual GPU layer count")
        self.mode = QButtonGroup(self)
        self.mode.addButton(self.auto_button)
        self.mode.addButton(self.manual_button)
        self.auto_button.setChecked(True)
        self.layers_slider = QSlider(Qt.Orientation.Horizontal)
        self.layers_slider.setAccessibleName("GPU layers")
        self.layers_slider.setPageStep(4)
        self.layers_value = _label("GPU layers value", "offloadNote")
        self.experts_spin = QSpinBox()
        self.experts_spin.setAccessibleName("Layers whose experts stay on the CPU")
        self.experts_spin.setSpecialValueText("Auto")
        self.experts_spin.setToolTip(EXPERTS_HELP)
        self.experts_value = _label("Experts on CPU value", "offloadNote")
        self.context = ContextControl(ticks=True)
        self.context_slider, self.context_spin = self.context.slider, self.context.spin
        self.kv_combo = QComboBox()
        self.kv_combo.setAccessibleName("KV cache type")
        for kv_type in KV_TYPES:
            self.kv_combo.addItem(KV_TYPE_LABELS[kv_type], kv_type)
        self.flash_check = QCheckBox("&Flash attention")
        self.flash_check.setAccessibleName("Flash attention")

    def _build_results(self) -> None:
        self.verdict = _label("Verdict", "offloadVerdict", wrap=True)
        self.figure = _label("Deciding figure", "offloadFigure", wrap=True)
        self.explanation = _label("Explanation", "offloadNote", wrap=True)
        self.placement = _label("Placement", "offloadNote", wrap=True)
        self.speed = _label("Predicted speed", "offloadNote")
        self.kv_figure = _label("KV cache size", "offloadNote")
        self.no_gpu = _label("GPU status", "offloadNote", wrap=True)
        self.no_gpu.setText(NO_GPU)
        self.no_gpu.hide()
        self.devices = QWidget()
        self.devices_layout = QVBoxLayout(self.devices)
        self.devices_layout.setContentsMargins(0, 0, 0, 0)
        self.devices_layout.setSpacing(10)
        self.apply_button = QPushButton("Apply and &reload")
        self.apply_button.setObjectName("primary")
        self.apply_button.setAccessibleName("Apply these settings and reload the model")
        self.apply_button.setEnabled(False)

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("GPU layers", self._row(self.auto_button, self.manual_button))
        form.addRow("", self._row(self.layers_slider, self.layers_value, stretch_first=True))
        self.experts_row = self._row(self.experts_spin, self.experts_value)
        form.addRow("&Experts on CPU", self.experts_row)
        form.labelForField(self.experts_row).setBuddy(self.experts_spin)
        self.form = form
        form.addRow("Context", self.context)
        form.addRow("&KV cache", self.kv_combo)
        form.addRow("", self.flash_check)
        form.labelForField(self.kv_combo).setBuddy(self.kv_combo)
        results = QFrame()
        results.setObjectName("offloadResults")
        column = QVBoxLayout(results)
        for widget in (self.verdict, self.figure, self.explanation, self.placement, self.speed, self.kv_figure,
                       self.no_gpu, self.devices):
            column.addWidget(widget)
        self.buttons = QHBoxLayout()
        self.buttons.addStretch(1)
        self.buttons.addWidget(self.apply_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addLayout(form)
        layout.addWidget(results)
        layout.addStretch(1)
        layout.addLayout(self.buttons)
        self._set_tab_order()

    @staticmethod
    def _row(first: QWidget, second: QWidget, *, stretch_first: bool = False) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(first, 1 if stretch_first else 0)
        layout.addWidget(second)
        if not stretch_first:
            layout.addStretch(1)
        return row

    def _set_tab_order(self) -> None:
        order = (self.auto_button, self.manual_button, self.layers_slider, self.experts_spin, self.context_slider,
                 self.context_spin, self.kv_combo, self.flash_check, self.apply_button)
        for before, after in zip(order, order[1:]):
            QWidget.setTabOrder(before, after)

    def _connect(self) -> None:
        self.auto_button.toggled.connect(self._mode_changed)
        self.layers_slider.valueChanged.connect(self._layers_moved)
        self.experts_spin.valueChanged.connect(lambda _value: self._changed())
        self.context.changed.connect(lambda _value: self._changed())
        self.kv_combo.currentIndexChanged.connect(self._kv_changed)
        self.flash_check.toggled.connect(lambda _on: self._changed())
        self.apply_button.clicked.connect(lambda: self.apply_requested.emit(self.choice()))

    # --- public ---

    def show_for(self, model_info: ModelInfo, hardware_snapshot: HardwareSnapshot,
                 current_choice: OffloadChoice, safety_margin_bytes: int = DEFAULT_GPU_MARGIN) -> None:
        """Show the controls for this model on this machine, set to `current_choice`, and plan it."""
        self.model, self.hardware, self.margin = model_info, hardware_snapshot, safety_margin_bytes
        choice = normalized(current_choice)
        n_layers = offloadable_layers(model_info)
        self._quiet = True
        self.heading.setText(self._heading_text(model_info, n_layers))
        self.layers_slider.setRange(0, n_layers)
        self.layers_slider.setValue(0 if choice.is_auto else manual_layers(choice, n_layers))
        (self.auto_button if choice.is_auto else self.manual_button).setChecked(True)
        self._set_experts(model_info, choice.cpu_expert_layers)
        self.context.set_range(trained_context(model_info), choice.context)
        self.kv_combo.setCurrentIndex(max(self.kv_combo.findData(choice.kv_type), 0))
        self.flash_check.setChecked(choice.flash_attn)
        self._quiet = False
        self._sync_flash()
        self._show_layers_value()
        self._plan_now()

    def choice(self) -> OffloadChoice:
        layers = None
        if self.manual_button.isChecked():
            value = self.layers_slider.value()
            layers = ALL_GPU_LAYERS if value == self.layers_slider.maximum() else value
        return normalized(OffloadChoice(gpu_layers=layers, context=self.context_spin.value(),
                                        kv_type=self.kv_combo.currentData(), flash_attn=self.flash_check.isChecked(),
                                        cpu_expert_layers=self._chosen_experts()))

    def _chosen_experts(self) -> int | None:
        if self.model is None or not has_experts(self.model) or self.experts_spin.value() == AUTO_EXPERTS:
            return None
        return self.experts_spin.value()

    # --- control changes ---

    @staticmethod
    def _heading_text(model: ModelInfo, n_layers: int) -> str:
        name = model.name or model.source.replace("\\", "/").rsplit("/", 1)[-1]
        trained = f" · trained for {model.context_length:,} tokens" if model.context_length else ""
        return f"<b>{html.escape(name)}</b> · {model.quantization} · {n_layers} layers{trained}"


    def _set_experts(self, model: ModelInfo, chosen: int | None) -> None:
        """The experts control, for a MoE model only: Auto, or the experts of 0..n_layers layers on the CPU."""
        self.form.setRowVisible(self.experts_row, has_experts(model))
        self.experts_spin.setRange(AUTO_EXPERTS, model.n_layers)
        self.experts_spin.setSuffix(f" of {model.n_layers} layers")
        self.experts_spin.setValue(AUTO_EXPERTS if chosen is None else min(chosen, model.n_layers))
        self.experts_value.setText("")

    def _mode_changed(self, _auto: bool) -> None:
        self._show_layers_value()
        self._changed()

    def _layers_moved(self, _value: int) -> None:
        if not self._quiet and self.auto_button.isChecked():
            self.manual_button.setChecked(True)  # moving the slider is a manual choice
        self._show_layers_value()
        self._changed()

    def _kv_changed(self, _index: int) -> None:
        self._sync_flash()
        self._changed()

    def _sync_flash(self) -> None:
        required = needs_flash_attention(self.kv_combo.currentData())
        if required:
            self.flash_check.setChecked(True)
        self.flash_check.setEnabled(not required)
        self.flash_check.setToolTip(FLASH_NEEDED if required else "Faster attention with a smaller compute buffer.")

    def _show_layers_value(self) -> None:
        auto = self.auto_button.isChecked()
        self.layers_value.setText(layers_text(self.layers_slider.value(), self.layers_slider.maximum(), auto))

    def _changed(self) -> None:
        if not self._quiet and self.model is not None:
            self._timer.start()

    # --- planning (off the UI thread) and showing the plan ---

    def _plan_now(self) -> None:
        self._timer.stop()
        self._generation += 1
        generation = self._generation
        (Task(plan_choice, self.model, self.hardware, self.choice(), self.margin, parent=self)
         .success(lambda plan: self._plan_ready(generation, plan))
         .failure(lambda error: self._plan_failed(generation, error))
         .run_in_background())

    def _is_current(self, generation: int) -> bool:
        return generation == self._generation and not self._timer.isActive()

    def _plan_ready(self, generation: int, plan: Plan) -> None:
        if not self._is_current(generation):
            return
        self.plan = plan
        self._show_verdict(plan.verdict, verdict_kind(plan))
        self.figure.setText(plan.deciding_figure)
        self.explanation.setText(plan.explanation)
        self.placement.setText(placement_text(plan))
        self.placement.setVisible(bool(self.placement.text()))
        self.speed.setText(speed_text(plan))
        self.kv_figure.setText(kv_text(plan))
        self._show_auto_layers(plan)
        self.experts_value.setText(experts_text(plan, self.experts_spin.value() == AUTO_EXPERTS))
        self._show_devices(plan.devices)
        self.apply_button.setEnabled(True)
        self.apply_button.setToolTip("" if plan.fits else "The planner predicts this does not fit: loading may fail.")
        self.planned.emit(plan)

    def _plan_failed(self, generation: int, error: BaseException) -> None:
        if not self._is_current(generation):
            return
        self.plan = None
        self._show_verdict(f"Cannot plan this: {error}", "error")
        for label in (self.figure, self.explanation, self.placement, self.speed, self.kv_figure, self.experts_value):
            label.setText("")
        self.apply_button.setEnabled(False)

    def _show_verdict(self, text: str, kind: str) -> None:
        self.verdict.setText(text)
        self.verdict.setProperty("verdict", kind)
        self.verdict.style().unpolish(self.verdict)
        self.verdict.style().polish(self.verdict)

    def _show_auto_layers(self, plan: Plan) -> None:
        has_gpu = any(device.is_gpu_like for device in plan.devices)
        self.no_gpu.setVisible(not has_gpu)
        self.layers_slider.setEnabled(has_gpu)
        self.manual_button.setEnabled(has_gpu)
        self.experts_spin.setEnabled(has_gpu)
        if self.auto_button.isChecked():
            self._quiet = True
            self.layers_slider.setValue(plan.n_gpu_layers)
            self._quiet = False
            self._show_layers_value()

    def _show_devices(self, devices: tuple[DevicePlan, ...]) -> None:
        if len(self.sections) != len(devices):
            self._rebuild_sections(devices)
        for index, (section, device) in enumerate(zip(self.sections, devices)):
            section.title.setText(device_title(device, index))
            section.show_figure(device_figure(device))
            section.show_parts(device_parts(device))

    def _rebuild_sections(self, devices: tuple[DevicePlan, ...]) -> None:
        for section in self.sections:
            section.setParent(None)
            section.deleteLater()
        self.sections = []
        for index, device in enumerate(devices):
            name = "Host RAM plan" if device.kind == "host" else f"GPU {index} plan"
            section = MemoryBarSection(device_title(device, index), name)
            section.title.setWordWrap(True)  # a long GPU name wraps instead of pushing the figure out
            self.devices_layout.addWidget(section)
            self.sections.append(section)


class OffloadDialog(QDialog):
    """The panel in a dialog: Apply closes it after emitting apply_requested; Esc cancels."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("GPU offload and context")
        self.setAccessibleName("GPU offload and context")
        self.panel = OffloadPanel(self)
        self.apply_requested = self.panel.apply_requested
        self.panel.apply_requested.connect(lambda _choice: self.accept())
        cancel = QPushButton("Cancel")
        cancel.setAccessibleName("Close without changing anything")
        cancel.clicked.connect(self.reject)
        self.panel.buttons.insertWidget(1, cancel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.panel)
        self.resize(600, 580)  # room for the wrapped legends; the dialog never shrinks below its content

    def show_for(self, model_info: ModelInfo, hardware_snapshot: HardwareSnapshot,
                 current_choice: OffloadChoice, safety_margin_bytes: int = DEFAULT_GPU_MARGIN) -> None:
        self.panel.show_for(model_info, hardware_snapshot, current_choice, safety_margin_bytes)
        self.show()
