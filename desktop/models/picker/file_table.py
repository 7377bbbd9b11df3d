"""A table of model files (name, file, quantisation, size, fit badge, predicted speed) with a 'fits' filter.

FileTableModel holds PickerRows; FitsFilter hides the rows whose badge says "Too large" when it is on. Updating
one row (a fit arriving) touches only that row, so a long list fills in without stalling the UI.
"""
from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from core.units import format_bytes
from desktop.models.picker.badges import badge_colours, badge_kind, badge_text, fits, speed_text
from desktop.models.picker.rows import PickerRow

COLUMNS = ("Model", "File", "Quant", "Size", "Fit on this machine", "Speed")
MODEL, FILE, QUANT, SIZE, FIT, SPEED = range(len(COLUMNS))
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
_FIT_ORDER = {"full": 0, "partial": 1, "cpu": 2, "unknown": 3, "checking": 4, "too-large": 5}


def _size_text(row: PickerRow) -> str:
    return format_bytes(row.size) if row.size else "—"


def _file_text(row: PickerRow) -> str:
    text = row.filename.rsplit("/", 1)[-1]
    if len(row.parts) > 1:
        text += f" (+{len(row.parts) - 1} parts)"
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
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
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
        if index.column() == FIT and role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole):
            background, text = badge_colours(badge_kind(row), self.dark)
            return QBrush(QColor(background if role == Qt.ItemDataRole.BackgroundRole else text))
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() in (SIZE, SPEED):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _text(row: PickerRow, column: int) -> str:
        return (row.title, _file_text(row), row.quant or "—", _size_text(row), badge_text(row),
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
            return f"{row.title}\n{row.repo_id}" if row.repo_id else row.title
        return ""


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
        self.setAlternatingRowColors(True)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(26)
        self._size_columns()
        self.selectionModel().currentRowChanged.connect(lambda current, _previous: self._emit_selected(current))

    def _size_columns(self) -> None:
        header = self.horizontalHeader()
        header.setSectionResizeMode(MODEL, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(FILE, QHeaderView.ResizeMode.Stretch)
        for column, width in ((QUANT, 80), (SIZE, 84), (FIT, 170), (SPEED, 96)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
            self.setColumnWidth(column, width)
        self.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # keep the list's own order until a header is clicked

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
