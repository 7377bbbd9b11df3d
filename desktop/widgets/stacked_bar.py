"""A horizontal bar split into named parts (engine / app / others / free), with a text legend.

Colour is never the only cue: each part is named with its figure in the legend below the bar, the
parts wide enough carry their figure inside, and the whole reads out as the accessible description.
The bar's own colours (outline, free space, muted legend text) follow the app's look (LOOKS): EMPTY_COLOR
names "free" and is painted in the look's free colour.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from core.platform.units import format_bytes
from desktop import theme

BAR_HEIGHT = 22
RADIUS = 5.0
OUTLINE = "#c9d0d7"
EMPTY_COLOR = "#eef1f4"  # the bar's background, and the colour of "Free"
MUTED = "#5b6670"
TEXT_ON_LIGHT = "#1d2329"
TEXT_ON_DARK = "#ffffff"
INSIDE_PADDING = 6


@dataclass(frozen=True)
class BarColours:
    outline: str
    free: str       # what EMPTY_COLOR paints as
    muted: str      # legend figures and the hollow swatch
    text_on_free: str


LOOKS = {"light": BarColours(OUTLINE, EMPTY_COLOR, MUTED, TEXT_ON_LIGHT),
         "dark": BarColours("#4a525c", "#2f353d", "#a3acb5", "#e6e9ed")}


def bar_colours(look: str | None = None) -> BarColours:
    return LOOKS.get(look or theme.look_now(), LOOKS["light"])


@dataclass(frozen=True)
class BarPart:
    name: str  # "Engine", "This app", "Others", "Free"
    bytes: int
    color: str  # "#rrggbb"
    dark: bool = False  # white text inside when True


def _share(part: BarPart, total: int) -> str:
    return f"{100 * part.bytes / total:.0f} %" if total else "—"


def legend_text(parts: list[BarPart]) -> str:
    """Plain text: 'Engine 3.1 GiB (5 %) · App 312.0 MiB (0 %) · ... of 64.0 GiB'."""
    total = sum(part.bytes for part in parts)
    items = [f"{part.name} {format_bytes(part.bytes)} ({_share(part, total)})" for part in parts]
    return " · ".join(items) + f" — of {format_bytes(total)}"


def _unbroken(text: str) -> str:
    return text.replace(" ", "&nbsp;")


def _swatch(part: BarPart, muted: str = MUTED) -> str:
    """A filled square in the part's colour; a hollow one for a part as pale as the bar's background."""
    if part.color.lower() == EMPTY_COLOR:
        return f'<span style="color:{muted}">&#9633;</span>'
    return f'<span style="color:{part.color}">&#9632;</span>'


def legend_html(parts: list[BarPart], look: str | None = None) -> str:
    """The legend with a colour swatch before each named figure; an item never breaks across lines.
    Muted figures in `look`'s colour (the app's current look when None)."""
    muted = bar_colours(look).muted
    total = sum(part.bytes for part in parts)
    items = [f'{_swatch(part, muted)}&nbsp;{_unbroken(part.name)}&nbsp;<b>{_unbroken(format_bytes(part.bytes))}</b>'
             f'&nbsp;<span style="color:{muted}">({_unbroken(_share(part, total))})</span>' for part in parts]
    total_text = f'<span style="color:{muted}">of&nbsp;{_unbroken(format_bytes(total))}</span>'
    return " &nbsp; ".join(items + [total_text])


class StackedBar(QWidget):
    """Paints the parts left to right in proportion to their bytes."""

    def __init__(self, accessible_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.parts: list[BarPart] = []
        self.setAccessibleName(accessible_name)
        self.setMinimumHeight(BAR_HEIGHT)
        self.setMaximumHeight(BAR_HEIGHT)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_parts(self, parts: list[BarPart]) -> None:
        if parts == self.parts:
            return
        self.parts = parts
        self.setAccessibleDescription(legend_text(parts))
        self.setToolTip(legend_text(parts).replace(" · ", "\n"))
        self.update()

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if theme.is_look_event(event):
            self.update()

    def paintEvent(self, _event) -> None:
        colours = bar_colours()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        outline = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        clip = QPainterPath()
        clip.addRoundedRect(outline, RADIUS, RADIUS)
        painter.setClipPath(clip)
        painter.fillRect(outline, QColor(colours.free))
        self._paint_parts(painter, outline, colours)
        painter.setClipping(False)
        painter.setPen(QPen(QColor(colours.outline), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(outline, RADIUS, RADIUS)

    def _paint_parts(self, painter: QPainter, area: QRectF, colours: BarColours) -> None:
        total = sum(part.bytes for part in self.parts)
        if total <= 0:
            return
        left = area.left()
        for part in self.parts:
            width = area.width() * part.bytes / total
            segment = QRectF(left, area.top(), width, area.height())
            free = part.color.lower() == EMPTY_COLOR
            painter.fillRect(segment, QColor(colours.free if free else part.color))
            self._paint_figure(painter, segment, part, colours.text_on_free if free else None)
            left += width

    def _paint_figure(self, painter: QPainter, segment: QRectF, part: BarPart, text_colour: str | None) -> None:
        text = format_bytes(part.bytes)
        if painter.fontMetrics().horizontalAdvance(text) + 2 * INSIDE_PADDING > segment.width():
            return
        painter.setPen(QColor(text_colour or (TEXT_ON_DARK if part.dark else TEXT_ON_LIGHT)))
        painter.drawText(segment, Qt.AlignmentFlag.AlignCenter, text)


class MemoryBarSection(theme.FollowsLook, QWidget):
    """A heading line (title left, a figure right), the stacked bar, and its legend."""

    def __init__(self, title: str, accessible_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel(title)
        self.title.setObjectName("dashboardSectionTitle")
        self.title.setAccessibleName(f"{accessible_name} title")
        self.figure = QLabel("")
        self.figure.setObjectName("dashboardSectionFigure")
        self.figure.setAccessibleName(f"{accessible_name} activity")
        self.bar = StackedBar(accessible_name)
        self.legend = QLabel("")
        self.legend.setObjectName("dashboardLegend")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setAccessibleName(f"{accessible_name} legend")
        self._look = theme.look_now()
        self._lay_out()

    def follow_look(self) -> None:
        if theme.look_now() != self._look:
            self._look = theme.look_now()
            if self.bar.parts:
                self.legend.setText(legend_html(self.bar.parts, self._look))

    def _lay_out(self) -> None:
        heading = QWidget()
        row = QHBoxLayout(heading)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.title, 1)
        row.addWidget(self.figure)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(heading)
        layout.addWidget(self.bar)
        layout.addWidget(self.legend)

    def show_parts(self, parts: list[BarPart]) -> None:
        if parts == self.bar.parts:
            return
        self.bar.set_parts(parts)
        self._look = theme.look_now()
        self.legend.setText(legend_html(parts, self._look))
        self.legend.setAccessibleDescription(legend_text(parts))

    def show_figure(self, text: str) -> None:
        if text != self.figure.text():
            self.figure.setText(text)
