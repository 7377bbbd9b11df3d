"""A table of model files (name, file, quantisation, size, fit badge, predicted speed) with a 'fits' filter.

FileTableModel holds PickerRows; FitsFilter hides the rows whose badge says "Too large" when it is on. Updating
one row (a fit arriving) touches only that row, so a long list fills in without stalling the UI.
"""
from __future__ import annotations

import re

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QRectF, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QPainter
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QStyle, QStyledItemDelegate, QStyleOptionViewItem,
                               QTableView, QWidget)

from core.platform.units import format_bytes
from desktop.models.picker.badges import (VISION, badge_colours, badge_kind, badge_text, fits, speed_text,
                                         vision_mark, vision_tooltip)
from desktop.models.picker.rows import PickerRow

COLUMNS = ("Model", "File", "Quant", "Size", "Fit on this machine", "Speed")
MIN_WIDTH_FOR_MODEL_COLUMN = 300  # pixels left for Model and File together; below, File takes them alone
MODEL, FILE, QUANT, SIZE, FIT, SPEED = range(len(COLUMNS))
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
BADGE_ROLE = Qt.ItemDataRole.UserRole + 3      # (background, text) of the fit badge, for the delegate's pill
FIXED_WIDTHS = {QUANT: 72, SIZE: 90, FIT: 150, SPEED: 78}   # the text columns (Model, File) share the rest
_FIT_ORDER = {"full": 0, "partial": 1, "cpu": 2, "unknown": 3, "checking": 4, "too-large": 5}


def _size_text(row: PickerRow) -> str:
    return format_bytes(row.size) if row.size else "—"


_FILE_NOTES = re.compile(r"(.*?)((?: \(\+\d+ parts\))?(?: · downloaded)?)", re.DOTALL)
_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}(?=\.gguf$)", re.IGNORECASE)
_QUANT_TAIL = re.compile(r"[-.][^-.]*\.gguf$", re.IGNORECASE)  # "-Q4_K_M.gguf", ".Q8_0.gguf"


def elide_file_name(text: str, metrics: QFontMetrics, width: int) -> str:
    """Shorten a file name to ``width`` pixels keeping its end whole ("Meta-Llama-3.1-…-Q4_K_M.gguf"): the end names
    the quantisation. Where even the end does not fit, it is elided in the middle."""
    if metrics.horizontalAdvance(text) <= width:
        return text
    tail = _QUANT_TAIL.search(text)
    if tail is not None:
        room = width - metrics.horizontalAdvance(tail[0])
        if room >= metrics.horizontalAdvance("xxx…"):
            return metrics.elidedText(text[:tail.start()], Qt.TextElideMode.ElideRight, room) + tail[0]
    return metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, max(width, 0))


def _file_text(row: PickerRow) -> str:
    text = row.filename.rsplit("/", 1)[-1]
    if len(row.parts) > 1:  # "x-Q4_K_M-00001-of-00003.gguf" -> "x-Q4_K_M.gguf (+2 parts)": the quant stays in view
        text = _SPLIT_SUFFIX.sub("", text) + f" (+{len(row.parts) - 1} parts)"
    return text + (" · downloaded" if row.is_remote and row.on_disk else "")


class FileTableModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list[PickerRow] = []
        self._index_of: dict[str, int] = {}
        self.dark = False

    # -- changing ------------------------------------------------------------------------------------------------
    def set_rows(self, rows: list[PickerRow]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self._index_of = {row.key: i for i, row in enumerate(self.rows)}
        self.endResetModel()

    def replace_row(self, row: PickerRow) -> bool:
        at = self._index_of.get(row.key)
        if at is None:
            return False
        self.rows[at] = row
        self.dataChanged.emit(self.index(at, 0), self.index(at, len(COLUMNS) - 1))
        return True

    def replace_rows(self, rows: list[PickerRow]) -> None:
        """Several rows at once: one change notice spanning them, so the view and filter update once."""
        places = [(self._index_of[row.key], row) for row in rows if row.key in self._index_of]
        if not places:
            return
        for at, row in places:
            self.rows[at] = row
        first, last = min(at for at, _ in places), max(at for at, _ in places)
        self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))

    def row(self, key: str) -> PickerRow | None:
        at = self._index_of.get(key)
        return None if at is None else self.rows[at]

    def set_dark(self, dark: bool) -> None:
        if dark != self.dark and self.rows:
            self.dark = dark
            self.dataChanged.emit(self.index(0, FIT), self.index(len(self.rows) - 1, FIT))
        self.dark = dark

    # -- Qt model ------------------------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role in (Qt.ItemDataRole.DisplayRole,
                                                                 Qt.ItemDataRole.ToolTipRole):
            return COLUMNS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return self._text(row, index.column())
        if role == ROW_ROLE:
            return row
        if role == SORT_ROLE:
            return self._sort_key(row, index.column())
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, index.column())
        if index.column() == FIT and role == BADGE_ROLE:
            return badge_colours(badge_kind(row), self.dark)
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() in (SIZE, SPEED):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _text(row: PickerRow, column: int) -> str:
        return (row.title + vision_mark(row), _file_text(row), row.quant or "—", _size_text(row), badge_text(row),
                speed_text(row))[column]

    @staticmethod
    def _sort_key(row: PickerRow, column: int):
        if column == SIZE:
            return row.size or 0
        if column == FIT:
            return _FIT_ORDER[badge_kind(row)]
        if column == SPEED:
            return (row.fit.tokens_per_second or 0.0) if row.fit is not None else 0.0
        return FileTableModel._text(row, column).lower()

    @staticmethod
    def _tooltip(row: PickerRow, column: int) -> str:
        if column == FIT and row.fit is not None:
            return row.fit.plan.explanation if row.fit.plan is not None else (row.fit.error or "")
        if column == FILE:
            return "\n".join(row.parts) if row.parts else str(row.local.path if row.local else row.filename)
        if column == MODEL:
            lines = [row.title, row.repo_id or "", vision_tooltip(row)]
            return "\n".join(line for line in lines if line)
        return FileTableModel._text(row, column)


class FitsFilter(QSortFilterProxyModel):
    """Hides rows that do not fit this machine when on; sorts by the model's SORT_ROLE."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.only_fitting = False
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_only_fitting(self, on: bool) -> None:
        if on != self.only_fitting:
            self.beginFilterChange()
            self.only_fitting = on
            self.endFilterChange()

    def filterAcceptsRow(self, source_row: int, source_parent) -> bool:
        if not self.only_fitting:
            return True
        row = self.sourceModel().index(source_row, 0, source_parent).data(ROW_ROLE)
        return row is None or fits(row)


class FileTableDelegate(QStyledItemDelegate):
    """File names shorten before their end (which names the quantisation); the fit badge is a pill in its own colours,
    drawn over the cell's selection or hover background so its text keeps its contrast in every state."""

    PADDING = 20   # the item's padding (picker.qss) and the style's text margins, both sides together

    def initStyleOption(self, option: QStyleOptionViewItem, index) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = (Qt.TextElideMode.ElideMiddle if index.column() == FILE
                                else Qt.TextElideMode.ElideRight)
        room = option.rect.width() - self.PADDING
        if index.column() == FILE and room > 0 and option.fontMetrics.horizontalAdvance(option.text) > room:
            # "long-name-Q4_K_M.gguf (+2 parts)": shorten the name before its quantisation, keep the notes whole
            name, notes = _FILE_NOTES.fullmatch(option.text).groups()
            rest = room - option.fontMetrics.horizontalAdvance(notes)
            option.text = (elide_file_name(name, option.fontMetrics, rest) + notes if rest >= 80
                           else elide_file_name(name, option.fontMetrics, room))  # narrow: the name before notes
        mark = f" · {VISION}"
        if (index.column() == MODEL and option.text.endswith(mark) and room > 0
                and option.fontMetrics.horizontalAdvance(option.text) > room):
            # "long-model-name · vision": the name shortens, the vision mark stays in view
            rest = room - option.fontMetrics.horizontalAdvance(mark)
            name = option.text.removesuffix(mark)
            option.text = (option.fontMetrics.elidedText(name, Qt.TextElideMode.ElideRight, rest) + mark
                           if rest >= 40 else option.text)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        colours = index.data(BADGE_ROLE) if index.column() == FIT else None
        if not colours:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        text, opt.text = opt.text, ""
        widget = opt.widget
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)  # selection, hover
        background, foreground = colours
        metrics = opt.fontMetrics
        pill = QRectF(opt.rect).adjusted(4, 3, -4, -3)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(background))
        painter.drawRoundedRect(pill, 4, 4)
        painter.setPen(QColor(foreground))
        painter.setFont(opt.font)
        inner = pill.adjusted(6, 0, -6, 0)
        painter.drawText(inner, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         metrics.elidedText(text, Qt.TextElideMode.ElideRight, int(inner.width())))
        painter.restore()


class FileTable(QTableView):
    """The view: whole-row selection, sortable columns; selected_changed(row or None)."""

    selected_changed = Signal(object)

    def __init__(self, accessible_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pickerFiles")
        self.setAccessibleName(accessible_name)
        self.source = FileTableModel(self)
        self.filter = FitsFilter(self)
        self.filter.setSourceModel(self.source)
        self.setModel(self.filter)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSortingEnabled(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.delegate = FileTableDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setAlternatingRowColors(True)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(26)
        self._size_columns()
        self.selectionModel().currentRowChanged.connect(lambda current, _previous: self._emit_selected(current))

    def _size_columns(self) -> None:
        header = self.horizontalHeader()
        header.setSectionResizeMode(MODEL, QHeaderView.ResizeMode.Interactive)  # 40 % of the text width (resizeEvent)
        header.setSectionResizeMode(FILE, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(48)
        for column, width in FIXED_WIDTHS.items():
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            self.setColumnWidth(column, width)
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # keep the list's own order until a header is clicked

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._share_text_width()

    def _share_text_width(self) -> None:
        """Model gets 40 % of what the fixed columns leave, File (stretching) the rest: file names are longer.
        Too narrow for both (a small screen), Model steps aside: the file name carries the model's name too."""
        free = self.viewport().width() - sum(self.columnWidth(column) for column in FIXED_WIDTHS)
        self.setColumnHidden(MODEL, free < MIN_WIDTH_FOR_MODEL_COLUMN)
        self.setColumnWidth(MODEL, max(90, int(free * 0.4)))

    def _emit_selected(self, current) -> None:
        self.selected_changed.emit(current.data(ROW_ROLE) if current.isValid() else None)

    def selected_row(self) -> PickerRow | None:
        current = self.currentIndex()
        return current.data(ROW_ROLE) if current.isValid() else None

    def select_key(self, key: str) -> bool:
        for proxy_row in range(self.filter.rowCount()):
            index = self.filter.index(proxy_row, 0)
            if index.data(ROW_ROLE).key == key:
                self.setCurrentIndex(index)
                return True
        return False

    def visible_rows(self) -> list[PickerRow]:
        return [self.filter.index(i, 0).data(ROW_ROLE) for i in range(self.filter.rowCount())]
