"""A QtCharts line chart of the last ten minutes that grows by one point per line each second.

Lines are created once (add_line) and then only appended to; the oldest point is dropped once a line
holds `capacity` points. Each append and removal would make QtCharts recompute the line's geometry, so
points change with the series' signals blocked; end_update() then slides the time axis, which makes
QtCharts re-read every line once (a line changed without a new time range is told by pointsReplaced).
While the chart is hidden, that redraw waits until it is shown.

Byte charts label their axis in MiB or GiB, whichever reads better for the largest figure shown; the
points are rescaled only when that unit changes.

Colours (background, title, axes, grid, legend and lines) follow the app's look (LOOKS; desktop/theme.py),
switched live with the theme.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from PySide6.QtCharts import QChart, QChartView, QDateTimeAxis, QLegend, QLineSeries, QValueAxis
from PySide6.QtCore import QDateTime, QMargins, QPointF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen

from core.monitor.history import CAPACITY, WINDOW_SECONDS

MIN_SPAN_SECONDS = 120
from desktop import theme

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


class _Line:
    """One series plus its raw (unscaled) values, kept to rescale and to find the largest."""

    def __init__(self, series: QLineSeries, capacity: int, slot: int = 0, dashed: bool = False) -> None:
        self.series = series
        self.slot = slot
        self.dashed = dashed
        self.times: deque[float] = deque(maxlen=capacity)
        self.values: deque[float] = deque(maxlen=capacity)
        self.changed = False  # points added since QtCharts last read them

    def append(self, msecs: float, value: float, scale: float) -> None:
        """Adds a point without redrawing; publish() redraws once for any number of appends."""
        self.times.append(msecs)
        self.values.append(value)
        blocked = self.series.blockSignals(True)
        self.series.append(msecs, value / scale)
        overflow = self.series.count() - self.times.maxlen
        if overflow > 0:
            self.series.removePoints(0, overflow)
        self.series.blockSignals(blocked)
        self.changed = True

    def publish(self) -> None:
        if self.changed:
            self.changed = False
            self.series.pointsReplaced.emit()

    def rescale(self, scale: float) -> None:
        self.series.replace([QPointF(t, v / scale) for t, v in zip(self.times, self.values)])
        self.changed = False

    def clear(self) -> None:
        self.times.clear()
        self.values.clear()
        self.series.clear()


class HistoryChart(theme.FollowsLook, QChartView):
    def __init__(self, title: str, *, percent: bool = False, capacity: int = CAPACITY, parent=None) -> None:
        super().__init__(parent)
        self.capacity = capacity
        self.percent = percent
        self.unit = PERCENT if percent else bytes_unit(0)
        self.lines: dict[str, _Line] = {}
        self._pending_end: float | None = None
        self._first_timestamp: float | None = None
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

    def add_line(self, key: str, label: str, *, color: int | None = None, dashed: bool = False) -> None:
        """A new line named `label` in the legend, in COLORS[color] (the next colour when None);
        does nothing when `key` already has one."""
        if key in self.lines:
            return
        slot = len(self.lines) if color is None else color
        series = QLineSeries()
        series.setName(label)
        series.setPen(self._pen(slot, dashed))
        self.chart().addSeries(series)
        series.attachAxis(self.time_axis)
        series.attachAxis(self.value_axis)
        self.lines[key] = _Line(series, self.capacity, slot, dashed)

    # --- feeding ---

    def append(self, key: str, timestamp: float, value: float | None) -> None:
        """One point (seconds since the epoch); an unknown value (None) leaves a line as it was."""
        if self._first_timestamp is None:
            self._first_timestamp = timestamp
        if value is not None:
            self.lines[key].append(timestamp * 1000.0, float(value), self.unit.scale)

    def end_update(self, timestamp: float) -> None:
        """After a round of appends: slide the time window to end at `timestamp`, fit the value axis.
        While the chart is hidden (a closed panel, another tab) this waits until it is shown."""
        self._pending_end = timestamp
        if self.isVisible():
            self._redraw()

    def showEvent(self, event) -> None:
        super().showEvent(event)  # follows the look first
        self._redraw()

    def _redraw(self) -> None:
        timestamp, self._pending_end = self._pending_end, None
        if timestamp is None:
            return
        end = QDateTime.fromMSecsSinceEpoch(int(timestamp * 1000))
        if end != self.time_axis.max():
            # A new time range makes QtCharts re-read every line's points: no need to tell each one.
            span = self._span_seconds(timestamp)
            self.time_axis.setFormat("HH:mm" if span >= WINDOW_SECONDS / 2 else "HH:mm:ss")
            self.time_axis.setRange(end.addSecs(-span), end)
            for line in self.lines.values():
                line.changed = False
        for line in self.lines.values():
            line.publish()
        if not self.percent:
            self._fit_bytes()

    def clear(self) -> None:
        for line in self.lines.values():
            line.clear()
        self._first_timestamp = None

    def _span_seconds(self, end: float) -> int:
        """The ten-minute window once there is that much history; until then only what has data (at least
        two minutes), so a fresh chart is not a sliver at its right edge."""
        first = self._first_timestamp if self._first_timestamp is not None else end
        return int(min(WINDOW_SECONDS, max(MIN_SPAN_SECONDS, end - first)))

    def point_count(self, key: str) -> int:
        return self.lines[key].series.count()

    # --- value axis ---

    def peak(self, key: str) -> float | None:
        """The largest value `key`'s line holds (in bytes or %), None when it has no point."""
        values = self.lines[key].values
        return max(values) if values else None

    def largest(self) -> float:
        return max((max(line.values) for line in self.lines.values() if line.values), default=0.0)

    def _fit_bytes(self) -> None:
        largest = self.largest()
        unit = bytes_unit(largest)
        if unit != self.unit:
            self.unit = unit
            self.value_axis.setLabelFormat(unit.label_format)
            for line in self.lines.values():
                line.rescale(unit.scale)
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
    axis.setFormat("HH:mm")
    axis.setTickCount(6)
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
