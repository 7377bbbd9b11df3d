"""A QtCharts line chart of the last ten minutes of core's MemoryHistory, one line per figure of a sample.

The history is the only copy of the samples: a line remembers how far into it it has read
(MemoryHistory.appended), and refresh() appends the samples it lacks and drops the points that fell out.
Each append and removal would make QtCharts recompute the line's geometry, so points change with the
series' signals blocked; the redraw then slides the time axis, which makes QtCharts re-read every line
once (a line changed without a new time range is told by pointsReplaced). While the chart is hidden,
that redraw waits until it is shown.

Byte charts label their axis in MiB or GiB, whichever reads better for the largest figure shown; the
points are redrawn from the history only when that unit changes. The time axis shows as many labels as
fit whole in the chart's width (QtCharts cuts a label wider than its share of the axis to "06:47:…").

Colours (background, title, axes, grid, legend and lines) follow the app's look (LOOKS; desktop/theme.py),
switched live with the theme.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCharts import QChart, QChartView, QDateTimeAxis, QLegend, QLineSeries, QValueAxis
from PySide6.QtCore import QDateTime, QMargins, QPointF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen

from core.monitor.history import SAMPLE_INTERVAL_SECONDS, WINDOW_SECONDS, Figure, MemoryHistory, Point
from desktop import theme

MIN_SPAN_SECONDS = 120

MIB = 2**20
GIB = 2**30
SMALLEST_BYTES_TOP = 100 * MIB  # an empty or nearly empty byte chart still reads 0 … 100 MiB
MIN_HEIGHT = 150
MAX_HEIGHT = 240
GRID = "#e6e9ed"
AXIS_TEXT = "#5b6670"
TITLE_TEXT = "#1d2329"
# Each line differs by colour and by dash, so lines stay apart for anyone who does not see the colours.
COLORS = ("#2f6fdb", "#e07b00", "#1a9e8f", "#8a4fd1", "#c2410c", "#5b6670")
DARK_COLORS = ("#5b9bf0", "#f0a040", "#3cc8b4", "#b48af0", "#f07850", "#a3acb5")  # same slots, on dark


@dataclass(frozen=True)
class ChartColours:
    background: str
    title: str
    axis_text: str
    grid: str
    lines: tuple[str, ...]


LOOKS = {"light": ChartColours("#ffffff", TITLE_TEXT, AXIS_TEXT, GRID, COLORS),
         "dark": ChartColours("#1e2227", "#f1f3f5", "#a3acb5", "#353c45", DARK_COLORS)}


@dataclass(frozen=True)
class AxisUnit:
    name: str  # "MiB", "GiB", "%"
    scale: float  # bytes per unit (1 for percent)
    label_format: str


PERCENT = AxisUnit("%", 1.0, "%.0f %%")


def bytes_unit(largest_bytes: float) -> AxisUnit:
    if largest_bytes >= 2 * GIB:
        return AxisUnit("GiB", GIB, "%.1f GiB" if largest_bytes < 10 * GIB else "%.0f GiB")
    return AxisUnit("MiB", MIB, "%.0f MiB")


# Nice axis tops (times a power of ten) and how many even steps each splits into.
NICE_TOPS = ((1, 4), (1.2, 4), (1.5, 3), (2, 4), (2.5, 5), (3, 3), (4, 4), (5, 5), (6, 3), (8, 4), (10, 4))


def _leading(value: float) -> tuple[float, float]:
    """value = leading × magnitude with 1 <= leading < 10 (value >= 1)."""
    magnitude = 10 ** (len(str(int(value))) - 1)
    return value / magnitude, magnitude


def nice_ceiling(value: float) -> float:
    """The smallest nice top (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) at least `value`, at least 1."""
    if value <= 1:
        return 1.0
    leading, magnitude = _leading(value)
    top = next(top for top, _steps in NICE_TOPS if top >= leading - 1e-9)
    return top * magnitude


def tick_interval(top: float) -> float:
    """Three to five even steps up to a nice top: 6 -> 2, 2.5 -> 0.5, 100 -> 25."""
    if top < 1:
        return top / 4
    leading, _magnitude = _leading(top)
    steps = next((steps for nice, steps in NICE_TOPS if abs(nice - leading) < 1e-6), 4)
    return top / steps


# Time labels: QtCharts gives each label the axis width / tick count, less a padding on either side
# (HorizontalAxis::updateGeometry; ChartAxisElement::labelPadding), and cuts a longer one with "…".
LABEL_PADDING = 5
LABEL_GAP = 4  # a little air between neighbouring labels
MAX_TIME_TICKS = 6
SHORT_SPAN_SECONDS = WINDOW_SECONDS / 2  # below this the labels need seconds to differ


def time_format(span_seconds: float) -> str:
    return "HH:mm" if span_seconds >= SHORT_SPAN_SECONDS else "HH:mm:ss"


def time_tick_count(axis_width: float, font: QFont, time_format_text: str) -> int:
    """How many evenly spaced time labels (2 … MAX_TIME_TICKS) fit whole on an axis this wide."""
    widest = QFontMetricsF(font).horizontalAdvance(time_format_text.replace("H", "0").replace("m", "0")
                                                   .replace("s", "0"))
    share = widest + 2 * LABEL_PADDING + LABEL_GAP
    return max(2, min(MAX_TIME_TICKS, int(axis_width // share)))


class _Line:
    """One series drawn from the history: the points it shows, how far into the history it has read, and the
    largest value it shows (kept so the axis and the peaks need not walk the history every second)."""

    def __init__(self, series: QLineSeries, figure: Figure, slot: int = 0, dashed: bool = False) -> None:
        self.series = series
        self.figure = figure
        self.slot = slot
        self.dashed = dashed
        self.read = 0  # MemoryHistory.appended when this line last read the history
        self.peak: Point | None = None  # (timestamp, value) of the largest value shown
        self.changed = False  # points added or removed since QtCharts last read them

    def catch_up(self, history: MemoryHistory, scale: float) -> None:
        """Adds the samples appended since the last call and drops the points that fell out of the history,
        without redrawing; publish() redraws once for any number of changes."""
        blocked = self.series.blockSignals(True)
        for sample in history.newest(history.appended - self.read):
            value = self.figure(sample)
            if value is not None:
                self.series.append(sample.timestamp * 1000.0, float(value) / scale)
                if self.peak is None or value >= self.peak[1]:
                    self.peak = (sample.timestamp, float(value))
                self.changed = True
        self.read = history.appended
        self._drop_older_than(history)
        self.series.blockSignals(blocked)

    def _drop_older_than(self, history: MemoryHistory) -> None:
        oldest = history.oldest
        if oldest is None:
            stale = self.series.count()
        else:
            stale, limit = 0, oldest.timestamp * 1000.0
            while stale < self.series.count() and self.series.at(stale).x() < limit:
                stale += 1
        if stale:
            self.series.removePoints(0, stale)
            self.changed = True
        if self.peak is not None and (oldest is None or self.peak[0] < oldest.timestamp):
            self.peak = history.peak_point(self.figure)  # the largest fell out: find the next one

    def publish(self) -> None:
        if self.changed:
            self.changed = False
            self.series.pointsReplaced.emit()

    def redraw_all(self, history: MemoryHistory, scale: float) -> None:
        self.series.replace([QPointF(t * 1000.0, v / scale) for t, v in history.series(self.figure)])
        self.changed = False


class HistoryChart(theme.FollowsLook, QChartView):
    def __init__(self, title: str, history: MemoryHistory, *, percent: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.history = history
        self.percent = percent
        self.unit = PERCENT if percent else bytes_unit(0)
        self.lines: dict[str, _Line] = {}
        self._redraw_pending = False
        self.look = theme.look_now()
        self._build_chart(title)
        self.setAccessibleName(f"{title} chart")
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(MIN_HEIGHT)
        self.setMaximumHeight(MAX_HEIGHT)

    # --- building ---

    def _build_chart(self, title: str) -> None:
        chart = QChart()
        chart.setTitle(title)
        chart.setTitleFont(_font(9, bold=True))
        chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
        chart.setBackgroundRoundness(0)
        chart.setMargins(QMargins(2, 2, 2, 2))
        chart.layout().setContentsMargins(0, 0, 0, 0)
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.legend().setMarkerShape(QLegend.MarkerShape.MarkerShapeFromSeries)  # a dashed line for a dashed one
        chart.legend().setFont(_font(8))
        self.time_axis = _time_axis()
        self.value_axis = _value_axis(self.unit, 100.0 if self.percent else SMALLEST_BYTES_TOP / MIB)
        chart.addAxis(self.time_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.value_axis, Qt.AlignmentFlag.AlignLeft)
        chart.plotAreaChanged.connect(self._fit_time_ticks)
        self.setChart(chart)
        self._colour_chart()

    # --- the look ---

    @property
    def colours(self) -> ChartColours:
        return LOOKS.get(self.look, LOOKS["light"])

    def follow_look(self) -> None:
        if theme.look_now() != self.look:
            self.look = theme.look_now()
            self._colour_chart()

    def _colour_chart(self) -> None:
        colours, chart = self.colours, self.chart()
        chart.setBackgroundBrush(QColor(colours.background))
        chart.setPlotAreaBackgroundVisible(False)
        chart.setTitleBrush(QColor(colours.title))
        chart.legend().setLabelColor(QColor(colours.axis_text))
        for axis in (self.time_axis, self.value_axis):
            _style_axis(axis, colours)
        self.setBackgroundBrush(QColor(colours.background))
        for line in self.lines.values():
            line.series.setPen(self._pen(line.slot, line.dashed))

    def _pen(self, slot: int, dashed: bool) -> QPen:
        lines = self.colours.lines
        return QPen(QColor(lines[slot % len(lines)]), 2, Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine)

    def add_line(self, key: str, label: str, figure: Figure, *, color: int | None = None,
                 dashed: bool = False) -> None:
        """A new line named `label` in the legend drawing `figure` of each sample, in COLORS[color] (the next
        colour when None); does nothing when `key` already has one. It shows the history at the next
        refresh()."""
        if key in self.lines:
            return
        slot = len(self.lines) if color is None else color
        series = QLineSeries()
        series.setName(label)
        series.setPen(self._pen(slot, dashed))
        self.chart().addSeries(series)
        series.attachAxis(self.time_axis)
        series.attachAxis(self.value_axis)
        self.lines[key] = _Line(series, figure, slot, dashed)

    # --- following the history ---

    def refresh(self) -> None:
        """After samples were appended to the history: every line catches up, the time window slides to end
        at the latest sample and the value axis fits. While the chart is hidden (a closed panel, another tab)
        the redraw waits until it is shown."""
        for line in self.lines.values():
            line.catch_up(self.history, self.unit.scale)
        self._redraw_pending = True
        if self.isVisible():
            self._redraw()

    def showEvent(self, event) -> None:
        super().showEvent(event)  # follows the look first
        self._redraw()

    def _redraw(self) -> None:
        latest = self.history.latest
        if not self._redraw_pending or latest is None:
            return
        self._redraw_pending = False
        end = QDateTime.fromMSecsSinceEpoch(int(latest.timestamp * 1000))
        if end != self.time_axis.max():
            # A new time range makes QtCharts re-read every line's points: no need to tell each one.
            span = self._span_seconds(latest.timestamp)
            self.time_axis.setFormat(time_format(span))
            self.time_axis.setRange(end.addSecs(-span), end)
            self._fit_time_ticks()
            for line in self.lines.values():
                line.changed = False
        for line in self.lines.values():
            line.publish()
        if not self.percent:
            self._fit_bytes()

    def _span_seconds(self, end: float) -> int:
        """The ten-minute window once there is that much history; until then only what has data (at least
        two minutes), so a fresh chart is not a sliver at its right edge."""
        oldest = self.history.oldest
        covered = end - oldest.timestamp + SAMPLE_INTERVAL_SECONDS if oldest is not None else 0.0
        return int(min(WINDOW_SECONDS, max(MIN_SPAN_SECONDS, covered)))

    def point_count(self, key: str) -> int:
        return self.lines[key].series.count()

    # --- time axis ---

    def _fit_time_ticks(self, *_plot_area) -> None:
        """As many time labels as fit the plot's width whole (QtCharts elides a label wider than its share)."""
        count = time_tick_count(self.chart().plotArea().width(), self.time_axis.labelsFont(),
                                self.time_axis.format())
        if count != self.time_axis.tickCount():
            self.time_axis.setTickCount(count)

    # --- value axis ---

    def peak(self, key: str) -> float | None:
        """The largest value `key`'s line shows (in bytes or %), None when it has no point."""
        peak = self.lines[key].peak
        return None if peak is None else peak[1]

    def largest(self) -> float:
        return max((line.peak[1] for line in self.lines.values() if line.peak is not None), default=0.0)

    def _fit_bytes(self) -> None:
        largest = self.largest()
        unit = bytes_unit(largest)
        if unit != self.unit:
            self.unit = unit
            self.value_axis.setLabelFormat(unit.label_format)
            for line in self.lines.values():
                line.redraw_all(self.history, unit.scale)
        top = nice_ceiling(max(largest * 1.1, SMALLEST_BYTES_TOP) / unit.scale)
        if top != self.value_axis.max():
            _set_top(self.value_axis, top)


def _font(points: int, *, bold: bool = False) -> QFont:
    font = QFont()
    font.setPointSize(points)
    font.setBold(bold)
    return font


def _style_axis(axis, colours: ChartColours | None = None) -> None:
    colours = colours or LOOKS["light"]
    axis.setLabelsFont(_font(8))
    axis.setLabelsColor(QColor(colours.axis_text))
    axis.setGridLineColor(QColor(colours.grid))
    axis.setLinePenColor(QColor(colours.grid))


def _time_axis() -> QDateTimeAxis:
    axis = QDateTimeAxis()
    axis.setFormat(time_format(WINDOW_SECONDS))
    axis.setTickCount(MAX_TIME_TICKS)
    _style_axis(axis)
    now = QDateTime.currentDateTime()
    axis.setRange(now.addSecs(-WINDOW_SECONDS), now)
    return axis


def _value_axis(unit: AxisUnit, top: float) -> QValueAxis:
    axis = QValueAxis()
    axis.setLabelFormat(unit.label_format)
    axis.setTickType(QValueAxis.TickType.TicksDynamic)
    axis.setTickAnchor(0)
    _set_top(axis, top)
    _style_axis(axis)
    return axis


def _set_top(axis: QValueAxis, top: float) -> None:
    axis.setRange(0, top)
    axis.setTickInterval(tick_interval(top))
