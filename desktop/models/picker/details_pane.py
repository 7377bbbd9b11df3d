"""The details of the selected file: the planned load per device (weights / KV cache / compute / free), where the
layers and a MoE model's experts go, context and KV-type controls that re-plan as they move, llama.cpp's exact
figures on request, Download and Load.

The pane plans nothing itself: desktop.models.picker.work.plan_row runs in a Task on a short debounce (the same
planning a load does), and the pane shows the Plan it returns.
"""
from __future__ import annotations

import html
from dataclasses import replace

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QVBoxLayout, QWidget)

from core.fit.choice import KV_TYPE_LABELS, context_steps, trained_context
from core.fit.planner import Plan
from core.settings import KV_TYPES
from core.platform.units import format_bytes
from desktop.models.offload_panel import (device_figure, device_parts, device_title, kv_text, placement_text,
                                          speed_text, verdict_kind)
from desktop.models.picker.rows import PickerRow
from desktop.models.picker.work import Planning, RowPlan, exact_figures, plan_row_off_thread
from desktop.widgets.context_control import ContextControl
from desktop.widgets.stacked_bar import MemoryBarSection
from desktop.tasks import Task

DEBOUNCE_MS = 120
NOTHING_SELECTED = "Select a file to see how it would run on this machine."


def exact_text(result) -> str:
    """llama.cpp's dry-run figures, one device a line."""
    lines = [f"{'Host RAM' if d.kind == 'host' else d.name}: {format_bytes(d.total_bytes)} — weights "
             f"{format_bytes(d.weights_bytes)}, KV cache {format_bytes(d.kv_bytes)}, compute "
             f"{format_bytes(d.compute_bytes + d.other_bytes)}" for d in result.devices]
    return "llama.cpp's dry run (exact):\n" + "\n".join(lines) + f"\nContext after padding: {result.n_ctx:,} tokens"


def heading_text(row: PickerRow) -> str:
    where = row.repo_id or (row.local.source if row.local else "")
    size = format_bytes(row.size) if row.size else "size unknown"
    return (f"<b>{html.escape(row.title)}</b><br><span>{html.escape(row.filename)} · {row.quant or '—'} · "
            f"{size} · {html.escape(where)}</span>" + vision_text(row))


def vision_text(row: PickerRow) -> str:
    """What the plan counts of a vision model's projector (core's fit check says, once the row is checked)."""
    projector = row.projector
    if projector is None:
        return ""
    name = html.escape(projector.filename)
    how = "loaded with it" if projector.path is not None else "downloaded with it"
    counted = row.fit.projector if row.fit is not None else None
    if counted is None:
        what = "the fit check counts it in the plan"
    elif counted.note:
        what = html.escape(counted.note.removesuffix("."))
    else:
        what = (f"the plan counts its weights ({format_bytes(counted.info.weights_bytes)}) and its image buffer, "
                "from its header")
    return f"<br><span>Vision: sees images with its projector {name}, {how} — {what}.</span>"


def _label(name: str, object_name: str, *, wrap: bool = True) -> QLabel:
    label = QLabel("")
    label.setObjectName(object_name)
    label.setAccessibleName(name)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class DetailsPane(QWidget):
    download_clicked = Signal(object)   # PickerRow
    load_clicked = Signal(object)       # PickerRow
    planned = Signal(object)            # RowPlan now shown
    notice = Signal(str, str)

    def __init__(self, parent: QWidget | None = None, *, debounce_ms: int = DEBOUNCE_MS) -> None:
        super().__init__(parent)
        self.setObjectName("pickerDetails")
        self.setAccessibleName("Details of the selected file")
        self.row: PickerRow | None = None
        self.planning: Planning | None = None
        self.shown: RowPlan | None = None
        self.sections: list[MemoryBarSection] = []
        self._generation = 0
        self._quiet = False
        self._downloading = False
        self._timer = QTimer(self, singleShot=True, interval=debounce_ms)
        self._timer.timeout.connect(self._plan_now)
        self._build()
        self._lay_out()
        self._connect()
        self.show_row(None, None)

    # -- building ------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.heading = _label("Selected file", "offloadHeading")
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        self.verdict = _label("Verdict", "offloadVerdict")
        self.explanation = _label("Explanation", "offloadNote")
        self.placement = _label("Placement", "offloadNote")
        self.speed = _label("Predicted speed", "offloadNote")
        self.kv_figure = _label("KV cache size", "offloadNote")
        self.context = ContextControl()
        self.context_slider, self.context_spin = self.context.slider, self.context.spin
        self.kv_combo = QComboBox()
        self.kv_combo.setAccessibleName("KV cache type")
        for kv_type in KV_TYPES:
            self.kv_combo.addItem(KV_TYPE_LABELS[kv_type], kv_type)
        self.devices = QWidget()
        self.devices_layout = QVBoxLayout(self.devices)
        self.devices_layout.setContentsMargins(0, 0, 0, 0)
        self.devices_layout.setSpacing(10)
        self.exact_button = QPushButton("&Exact figures")
        self.exact_button.setAccessibleName("Exact figures from llama.cpp's dry run")
        self.exact_button.setToolTip("Runs llama.cpp's own dry run on the file's header: nothing is downloaded.")
        self.exact = _label("Exact figures", "offloadNote")
        self.download_button = QPushButton("&Download")
        self.download_button.setObjectName("primary")
        self.download_button.setAccessibleName("Download this file")
        self.load_button = QPushButton("&Load")
        self.load_button.setObjectName("primary")
        self.load_button.setAccessibleName("Load this model")

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("&Context", self.context)
        form.addRow("&KV cache", self.kv_combo)
        form.labelForField(self.context).setBuddy(self.context_spin)
        form.labelForField(self.kv_combo).setBuddy(self.kv_combo)
        self.controls = QWidget()
        self.controls.setLayout(form)
        self.results = results = QFrame()
        results.setObjectName("offloadResults")
        column = QVBoxLayout(results)
        for widget in (self.verdict, self.explanation, self.placement, self.speed, self.kv_figure, self.devices):
            column.addWidget(widget)
        exact_row = QHBoxLayout()
        exact_row.addWidget(self.exact_button)
        exact_row.addStretch(1)
        content = QWidget()
        content.setObjectName("pickerDetailsContent")
        inner = QVBoxLayout(content)
        inner.setContentsMargins(0, 0, 4, 0)
        inner.addWidget(self.heading)
        inner.addWidget(self.controls)
        inner.addWidget(results)
        inner.addLayout(exact_row)
        inner.addWidget(self.exact)
        inner.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        # Its text wraps to the pane's width: a sideways scroll bar would only ever hide a few pixels.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.load_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        order = (self.context_slider, self.context_spin, self.kv_combo, self.exact_button, self.download_button,
                 self.load_button)
        for before, after in zip(order, order[1:]):
            QWidget.setTabOrder(before, after)

    def _connect(self) -> None:
        self.context.changed.connect(lambda _value: self._changed())
        self.kv_combo.currentIndexChanged.connect(lambda _index: self._changed())
        self.exact_button.clicked.connect(self._exact_now)
        self.download_button.clicked.connect(lambda: self.row and self.download_clicked.emit(self.row))
        self.load_button.clicked.connect(lambda: self.row and self.load_clicked.emit(self.row))

    # -- public --------------------------------------------------------------------------------------------------
    def show_row(self, row: PickerRow | None, planning: Planning | None, *, downloading: bool = False) -> None:
        """Show `row` planned with `planning`'s choice (a new row starts from it; the same row keeps the controls)."""
        same = row is not None and self.row is not None and row.key == self.row.key
        was_ready = same and self.row.fit is not None  # type: ignore[union-attr]
        first_planning = self.planning is None and planning is not None
        self.row, self._downloading = row, downloading
        if planning is not None and (not same or first_planning):
            self.planning = planning
        self._show_buttons()
        self.controls.setVisible(row is not None)
        self.results.setVisible(row is not None)
        self.exact_button.setVisible(row is not None)
        self.exact.setVisible(row is not None)
        if row is None:
            self._clear("")
            self.heading.setText(NOTHING_SELECTED)
            return
        self.heading.setText(heading_text(row))
        if not same or first_planning:
            self.exact.setText("")
            self._set_controls(self.planning)
        if not same or first_planning or (row.fit is not None and not was_ready):
            self._plan_now()

    def set_downloading(self, downloading: bool) -> None:
        self._downloading = downloading
        self._show_buttons()

    def choice(self):
        base = self.planning.choice  # type: ignore[union-attr]
        return replace(base, context=self.context_spin.value(), kv_type=self.kv_combo.currentData())

    # -- controls ------------------------------------------------------------------------------------------------
    def _set_controls(self, planning: Planning | None, trained: int | None = None) -> None:
        if planning is None:
            return
        self._quiet = True
        self.context.set_range(trained or 131072, planning.choice.context)
        self.kv_combo.setCurrentIndex(max(self.kv_combo.findData(planning.choice.kv_type), 0))
        self._quiet = False

    def _fit_context_range(self, trained: int) -> None:
        """Once the model is known: offer contexts up to what it was trained for."""
        if context_steps(trained) != self.context.steps:
            self.context.set_range(trained, self.context.value())

    def _changed(self) -> None:
        if not self._quiet and self.row is not None:
            self._timer.start()

    # -- planning (off the UI thread) ----------------------------------------------------------------------------
    def _plan_now(self) -> None:
        self._timer.stop()
        self._generation += 1
        row, planning = self.row, self.planning
        if row is None:
            return
        if planning is None:
            self._clear("Reading this machine's memory…")
            return
        if row.is_remote and row.fit is None:
            self._clear("Reading this file's header from the hub…")
            return
        generation = self._generation
        chosen = replace(planning, choice=self.choice())
        (Task(plan_row_off_thread, row, chosen, parent=self)
         .success(lambda result: self._plan_ready(generation, result))
         .failure(lambda error: self._plan_failed(generation, error))
         .run_in_background())

    def _is_current(self, generation: int) -> bool:
        return generation == self._generation and not self._timer.isActive()

    def _plan_ready(self, generation: int, result: RowPlan) -> None:
        if not self._is_current(generation):
            return
        self.shown = result
        plan = result.plan
        self._fit_context_range(trained_context(result.info))
        self._show_verdict(plan.verdict, verdict_kind(plan))
        self.explanation.setText(plan.explanation)
        self._show_placement(placement_text(plan))
        self.speed.setText(speed_text(plan))
        self.kv_figure.setText(kv_text(plan))
        self._show_devices(plan)
        self.exact_button.setEnabled(True)
        self.planned.emit(result)

    def _plan_failed(self, generation: int, error: BaseException) -> None:
        if self._is_current(generation):
            self._clear(f"Cannot plan this file: {error}", kind="error")

    def _show_verdict(self, text: str, kind: str) -> None:
        self.verdict.setText(text)
        self.verdict.setProperty("verdict", kind)
        self.verdict.style().unpolish(self.verdict)
        self.verdict.style().polish(self.verdict)

    def _show_placement(self, sentence: str) -> None:
        self.placement.setText(sentence)
        self.placement.setVisible(bool(sentence))

    def _show_devices(self, plan: Plan) -> None:
        if len(self.sections) != len(plan.devices):
            self._rebuild_sections(plan)
        for index, (section, device) in enumerate(zip(self.sections, plan.devices)):
            section.title.setText(device_title(device, index))
            section.show_figure(device_figure(device))
            section.show_parts(device_parts(device))
        self.devices.show()

    def _rebuild_sections(self, plan: Plan) -> None:
        for section in self.sections:
            section.setParent(None)
            section.deleteLater()
        self.sections = []
        for index, device in enumerate(plan.devices):
            name = "Host RAM plan" if device.kind == "host" else f"GPU {index} plan"
            section = MemoryBarSection(device_title(device, index), name)
            section.title.setWordWrap(True)
            self.devices_layout.addWidget(section)
            self.sections.append(section)

    def _clear(self, sentence: str, *, kind: str = "") -> None:
        self.shown = None
        self._show_verdict(sentence, kind)
        for label in (self.explanation, self.speed, self.kv_figure):
            label.setText("")
        self._show_placement("")
        self.devices.hide()
        self.exact_button.setEnabled(False)

    # -- exact figures and buttons -------------------------------------------------------------------------------
    def _exact_now(self) -> None:
        if self.shown is None or self.row is None or self.planning is None:
            return
        key = self.row.key
        self.exact_button.setEnabled(False)
        self.exact.setText("Running llama.cpp's dry run…")
        (Task(exact_figures, self.row, self.shown.plan, self.planning.cache, parent=self)
         .success(lambda result: self._exact_ready(key, exact_text(result)))
         .failure(lambda error: self._exact_ready(key, f"The dry run failed: {error}"))
         .run_in_background())

    def _exact_ready(self, key: str, text: str) -> None:
        if self.row is None or self.row.key != key:
            return
        self.exact.setText(text)
        self.exact_button.setEnabled(self.shown is not None)

    def _show_buttons(self) -> None:
        row = self.row
        remote = row is not None and row.is_remote
        self.download_button.setVisible(row is None or remote)
        self.download_button.setEnabled(remote and not row.on_disk and not self._downloading)  # type: ignore[union-attr]
        self.download_button.setText("Downloading…" if self._downloading else
                                     "Downloaded" if remote and row.on_disk else "&Download")  # type: ignore[union-attr]
        self.load_button.setEnabled(row is not None and row.on_disk)
        self.load_button.setToolTip("" if row is not None and row.on_disk else
                                    "Download the file first: only verified files on this computer can be loaded.")
