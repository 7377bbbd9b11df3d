"""Search: GGUF repositories on the hub (sorted by downloads, likes or recency), then a repository's files."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLineEdit, QPushButton,
                               QSplitter, QTableWidget, QTableWidgetItem)

from core.models.hub import RepoSummary
from desktop.models.picker.file_list_tab import FileListTab

SORTS = (("Most downloaded", "downloads"), ("Most liked", "likes"), ("Recently updated", "recent"))
REPO_COLUMNS = ("Repository", "Downloads", "Likes", "Updated", "Access")


def repo_cells(hit: RepoSummary) -> tuple[str, ...]:
    updated = hit.last_modified.date().isoformat() if hit.last_modified else "—"
    return (hit.repo_id, f"{hit.downloads:,}", f"{hit.likes:,}", updated, "Gated: needs a login" if hit.gated else "")


class SearchTab(FileListTab):
    search_requested = Signal(str, str)   # text, sort
    repo_chosen = Signal(str)             # repo id

    def __init__(self, parent=None) -> None:
        super().__init__("Search", parent)
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search Hugging Face for GGUF models, e.g. qwen3")
        self.query.setAccessibleName("Search text")
        self.query.setClearButtonEnabled(True)
        self.sort = QComboBox()
        self.sort.setAccessibleName("Sort results by")
        for label, value in SORTS:
            self.sort.addItem(label, value)
        self.go = QPushButton("&Search")
        self.go.setAccessibleName("Search the hub")
        self.repos = self._repo_table()
        self._lay_out()
        self.query.returnPressed.connect(self._request)
        self.go.clicked.connect(self._request)
        self.sort.currentIndexChanged.connect(lambda _i: self.query.text().strip() and self._request())
        self.repos.itemSelectionChanged.connect(self._repo_selected)
        self.status.setText("Search the hub; pick a repository to see its files with fit badges.")

    def _repo_table(self) -> QTableWidget:
        table = QTableWidget(0, len(REPO_COLUMNS))
        table.setObjectName("pickerRepos")
        table.setAccessibleName("Search results")
        table.setHorizontalHeaderLabels(REPO_COLUMNS)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.verticalHeader().hide()
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        return table

    def _lay_out(self) -> None:
        bar = QHBoxLayout()
        bar.addWidget(self.query, 1)
        bar.addWidget(self.sort)
        bar.addWidget(self.go)
        self.layout_.removeWidget(self.table)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.repos)
        split.addWidget(self.table)
        split.setStretchFactor(1, 2)
        self.layout_.insertLayout(0, bar)
        self.layout_.insertWidget(1, split, 1)
        for before, after in ((self.query, self.sort), (self.sort, self.go), (self.go, self.repos),
                              (self.repos, self.table)):
            self.setTabOrder(before, after)

    def _request(self) -> None:
        self.search_requested.emit(self.query.text().strip(), self.sort.currentData())

    def show_results(self, hits: list[RepoSummary]) -> None:
        self.repos.setRowCount(0)
        for hit in hits:
            at = self.repos.rowCount()
            self.repos.insertRow(at)
            for column, text in enumerate(repo_cells(hit)):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, hit.repo_id)
                if column in (1, 2):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.repos.setItem(at, column, item)
        self.repos.resizeColumnsToContents()
        self.repos.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.status.setText(f"{len(hits)} repositories found." if hits else "No GGUF repositories match.")

    def _repo_selected(self) -> None:
        items = self.repos.selectedItems()
        if items:
            self.repo_chosen.emit(items[0].data(Qt.ItemDataRole.UserRole))
