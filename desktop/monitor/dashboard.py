"""The memory dashboard: where the memory went, now and over the last ten minutes.

    dashboard = MemoryDashboard()
    sampler.sampled.connect(dashboard.show_sample)            # desktop.monitor.sampler.MemorySampler
    session.loaded.connect(dashboard.show_loaded_model)       # LoadedModel -> "Prediction vs actual"
    dashboard.show_remote("gpu-box:8080")                     # a remote model: its memory is not here (None: local)

It never samples by itself: whoever owns the 1 Hz MemorySampler feeds it. Each sample goes into core's
MemoryHistory, the only copy kept: the charts draw their lines from it and the peaks are read from them.
From top to bottom: host RAM
as a stacked bar (engine / app / others / free), one such bar per GPU (this app / others / free) or a
sentence when there is none, the prediction box, and line charts of RAM, VRAM and utilisation. The
content scrolls when the panel is shorter than it. Its colours follow the app's look (STYLES, and the bars'
and charts' own; desktop/theme.py), switched live with the theme.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from core.engine.protocol import LoadedModel
from core.monitor.history import MemoryHistory, app_resident, cpu_percent, gpu_app_used, gpu_used, gpu_utilisation
from core.fit import calibration
from core.fit.calibration import LoadComparison
from core.monitor.samples import GpuMemory, MemorySample, RamSplit, VramSplit
from core.platform.units import format_bytes
from desktop import theme
from desktop.monitor.history_chart import HistoryChart
from desktop.monitor.prediction_box import PredictionBox
from desktop.tasks import Task
from desktop.widgets.stacked_bar import EMPTY_COLOR, BarPart, MemoryBarSection

NO_GPU = "No GPU detected — everything runs on the CPU"
WAITING = "Waiting for the first sample…"


def remote_text(host: str) -> str:
    return f"The model runs on {host}: its memory is not on this computer."

ENGINE_COLOR = "#2f6fdb"
APP_COLOR = "#8fb3ee"
OTHERS_COLOR = "#a9b2bc"
CPU_LINE, APP_LINE = 0, 5  # HistoryChart.COLORS slots; GPU n draws in slot n + 1 on every chart

STYLE = """
#memoryDashboard, #memoryDashboardContent { background: #ffffff; }
#dashboardHeading { font-weight: 600; font-size: 11pt; color: #1d2329; }
#dashboardSectionTitle { font-weight: 600; color: #1d2329; }
#dashboardSectionFigure, #dashboardNote { color: #5b6670; }
#dashboardLegend { color: #3c4650; }
#predictionBox { font-weight: 600; color: #1d2329; border: 1px solid #dde1e6; border-radius: 6px;
                 margin-top: 8px; padding: 6px 4px 4px 4px; background: #f6f7f9; }
#predictionBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; }
#predictionBox QLabel { font-weight: normal; color: #3c4650; }
#predictionBox QLabel#predictionModel { font-weight: 600; color: #1d2329; }
"""
DARK_STYLE = """
#memoryDashboard, #memoryDashboardContent { background: #1e2227; }
#dashboardHeading { font-weight: 600; font-size: 11pt; color: #f1f3f5; }
#dashboardSectionTitle { font-weight: 600; color: #f1f3f5; }
#dashboardSectionFigure, #dashboardNote { color: #a3acb5; }
#dashboardLegend { color: #c5ccd3; }
#predictionBox { font-weight: 600; color: #f1f3f5; border: 1px solid #3a414a; border-radius: 6px;
                 margin-top: 8px; padding: 6px 4px 4px 4px; background: #252a30; }
#predictionBox::title { subcontrol-origin: margin; left: 8px; padding: 0 4px; }
#predictionBox QLabel { font-weight: normal; color: #c5ccd3; }
#predictionBox QLabel#predictionModel { font-weight: 600; color: #f1f3f5; }
"""
STYLES = {"light": STYLE, "dark": DARK_STYLE}


# --- what the bars show (the figures come from core.monitor.samples's splits) ---

def ram_parts(split: RamSplit, engine_running: bool) -> list[BarPart]:
    engine = [BarPart("Engine", split.engine_bytes, ENGINE_COLOR, dark=True)] if engine_running else []
    return engine + [BarPart("App", split.app_bytes, APP_COLOR),
                     BarPart("Others", split.others_bytes, OTHERS_COLOR),
                     BarPart("Free", split.free_bytes, EMPTY_COLOR)]


def vram_parts(split: VramSplit) -> list[BarPart]:
    if split.app_bytes is None:
        used = [BarPart("Used (per-process share unknown)", split.others_bytes, OTHERS_COLOR)]
    else:
        used = [BarPart("This app", split.app_bytes, ENGINE_COLOR, dark=True),
                BarPart("Others", split.others_bytes, OTHERS_COLOR)]
    return used + [BarPart("Free", split.free_bytes, EMPTY_COLOR)]


def busy_text(percent: float | None, what: str = "") -> str:
    """'CPU 23 % busy', '61 % busy', or '' when unknown."""
    if percent is None:
        return ""
    return f"{what} {percent:.0f} % busy".strip()


def gpu_title(gpu: GpuMemory) -> str:
    shared = " (shares host RAM)" if gpu.unified_memory else ""
    return f"GPU {gpu.index} · {gpu.name}{shared}"


class MemoryDashboard(theme.FollowsLook, QWidget):
    def __init__(self, history: MemoryHistory | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("memoryDashboard")
        self.setAccessibleName("Memory dashboard")
        self._look: str | None = None
        self.follow_look()
        self._history = history if history is not None else MemoryHistory()
        self.gpu_sections: dict[int, MemoryBarSection] = {}
        self._build()
        self._replay_history()

    @property
    def history(self) -> MemoryHistory:
        return self._history

    @property
    def look(self) -> str:
        return self._look or "light"

    def follow_look(self) -> None:
        """The dashboard's rules in the app's current look (the bars and charts follow it themselves)."""
        look = theme.look_now()
        if look != self._look:
            self._look = look
            self.setStyleSheet(STYLES.get(look, STYLE))

    # --- building ---

    def _build(self) -> None:
        self.heading = _label("Memory", "dashboardHeading", "Memory dashboard heading")
        self.status = _label(WAITING, "dashboardNote", "Memory dashboard status")
        self.host_section = MemoryBarSection("Host RAM", "Host RAM")
        self.no_gpu = _label(NO_GPU, "dashboardNote", "GPU status")
        self.no_gpu.setVisible(False)  # until a sample says so
        self.prediction = PredictionBox()
        self.remote_note = _label("", "dashboardNote", "Where the model runs")
        self.remote_note.setWordWrap(True)
        self.remote_note.setVisible(False)
        self.ram_chart = HistoryChart("RAM over time", self._history)
        self.ram_chart.add_line("engine", "Engine", engine_or_nothing, color=CPU_LINE)
        self.ram_chart.add_line("app", "App", app_resident, color=APP_LINE, dashed=True)
        self.vram_chart = HistoryChart("VRAM over time", self._history)
        self.vram_chart.setVisible(False)
        self.busy_chart = HistoryChart("Utilisation over time", self._history, percent=True)
        self.busy_chart.add_line("cpu", "CPU", cpu_percent, color=CPU_LINE)
        self.peaks = _label("", "dashboardNote", "Peaks in the last 10 minutes")
        self.peaks.setWordWrap(True)
        self._lay_out()

    def _lay_out(self) -> None:
        content = QWidget()
        content.setObjectName("memoryDashboardContent")
        column = QVBoxLayout(content)
        column.setContentsMargins(12, 10, 12, 10)
        column.setSpacing(10)
        for widget in (self.heading, self.remote_note, self.status, self.host_section, self.no_gpu):
            column.addWidget(widget)
        self.gpu_area = QVBoxLayout()
        self.gpu_area.setSpacing(10)
        column.addLayout(self.gpu_area)
        # The peaks sum up the charts: above them, where they stay in view when the charts do not.
        for widget in (self.prediction, self.peaks, self.ram_chart, self.vram_chart, self.busy_chart):
            column.addWidget(widget)
        column.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setAccessibleName("Memory dashboard scroll area")
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll)

    def _replay_history(self) -> None:
        for sample in self._history:
            self._add_new_gpus(sample)
        if self._history.latest is not None:
            self._show_now(self._history.latest)
            self._refresh_charts()

    # --- feeding ---

    def show_sample(self, sample: MemorySample) -> None:
        """One 1 Hz sample: into the history, then the bars and every chart show it."""
        self._history.append(sample)
        self._show_now(sample)  # adds a newly seen GPU's section and lines
        self._refresh_charts()

    def show_prediction(self, comparison: LoadComparison | None) -> None:
        self.prediction.show_comparison(comparison)

    def show_remote(self, host: str | None) -> None:
        """A model on another computer (its host) in use, or None for a local one: the prediction box is a local
        load's, so it gives way to the sentence saying where the memory is."""
        self.remote_note.setText(remote_text(host) if host else "")
        self.remote_note.setVisible(bool(host))
        self.prediction.setVisible(not host)

    def show_loaded_model(self, model: LoadedModel | None) -> None:
        """After a load (or None after an unload): the prediction box for this model, and the load kept in this
        machine's calibration history (a file write: off the UI thread)."""
        self.show_prediction(calibration.compare_load(model) if model is not None else None)
        if model is not None and model.allocations:
            Task(calibration.record_load, model, parent=self).run_in_background()

    # --- now: bars ---

    def _show_now(self, sample: MemorySample) -> None:
        if not self.status.isHidden():
            self.status.setVisible(False)
        self.host_section.show_parts(ram_parts(sample.ram, sample.engine_resident_bytes is not None))
        self.host_section.show_figure(busy_text(sample.cpu_percent, "CPU"))
        self._sync_gpu_sections(sample.gpus)
        for gpu in sample.gpus:
            section = self.gpu_sections[gpu.index]
            section.show_parts(vram_parts(gpu.split))
            section.show_figure(busy_text(gpu.utilisation_percent))

    def _sync_gpu_sections(self, gpus: tuple[GpuMemory, ...]) -> None:
        """One bar per GPU, created the first time it shows up; hidden while it is missing."""
        present = {gpu.index for gpu in gpus}
        for gpu in gpus:
            if gpu.index not in self.gpu_sections:
                self._add_gpu(gpu)
        for index, section in self.gpu_sections.items():
            _show(section, index in present)
        _show(self.no_gpu, not present)
        _show(self.vram_chart, bool(present))

    def _add_gpu(self, gpu: GpuMemory) -> None:
        section = MemoryBarSection(gpu_title(gpu), f"GPU {gpu.index} memory")
        self.gpu_sections[gpu.index] = section
        self.gpu_area.addWidget(section)
        index, slot = gpu.index, gpu.index + 1
        self.vram_chart.add_line(f"gpu{index}-app", f"GPU {index} app", gpu_app_used(index), color=slot)
        self.vram_chart.add_line(f"gpu{index}-used", f"GPU {index} total", gpu_used(index), color=slot,
                                 dashed=True)
        self.busy_chart.add_line(f"gpu{index}", f"GPU {index}", gpu_utilisation(index), color=slot)

    # --- over time: charts ---

    def _add_new_gpus(self, sample: MemorySample) -> None:
        """Lines for GPUs the history saw before this dashboard was made (show_sample adds later ones)."""
        for gpu in sample.gpus:
            if gpu.index not in self.gpu_sections:
                self._add_gpu(gpu)

    def _refresh_charts(self) -> None:
        for chart in (self.ram_chart, self.vram_chart, self.busy_chart):
            chart.refresh()
        self._show_peaks()

    def _show_peaks(self) -> None:
        peaks = [f"engine {format_bytes(self.ram_chart.peak('engine'))}",
                 f"app {format_bytes(self.ram_chart.peak('app'))}"]
        peaks += [f"GPU {index} app {format_bytes(self.vram_chart.peak(f'gpu{index}-app'))}"
                  for index in self.gpu_sections]
        text = "Peak in the last 10 minutes: " + " · ".join(peaks)
        if text != self.peaks.text():
            self.peaks.setText(text)


def engine_or_nothing(sample: MemorySample) -> int:
    """The engine's resident bytes for the RAM chart: 0 while no engine runs (it holds nothing)."""
    return sample.engine_resident_bytes or 0


def _label(text: str, object_name: str, accessible_name: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName(object_name)
    label.setAccessibleName(accessible_name)
    return label


def _show(widget: QWidget, visible: bool) -> None:
    """setVisible only on a change (a call per second per widget adds up)."""
    if widget.isHidden() == visible:
        widget.setVisible(visible)
