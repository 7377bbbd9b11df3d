"""The conversation list: search box, the chats newest first (the open one highlighted), and
New / Rename / Delete. It shows what it is given and reports what the user asked for; the workspace
talks to the store."""
from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout,
                               QWidget)

from core.chat.store import ConversationSummary

SEARCH_DELAY_MS = 200
UNTITLED = "New chat"
_ID = Qt.ItemDataRole.UserRole


class ConversationList(QWidget):
    chosen = Signal(str)                 # conversation id
    new_requested = Signal()
    rename_requested = Signal(str, str)  # id, new title
    delete_requested = Signal(str)       # id
    search_changed = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("conversationList")
        self.search = QLineEdit(placeholderText="Search chats")
        self.search.setAccessibleName("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setObjectName("conversations")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setEditTriggers(QListWidget.EditTrigger.EditKeyPressed | QListWidget.EditTrigger.DoubleClicked)
        self.new_button = _button("New chat", "New conversation (Ctrl+N)", "primary")
        self.rename_button = _button("Rename", "Rename the conversation (F2)")
        self.delete_button = _button("Delete", "Delete the conversation")
        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._filling = False
        self._lay_out()
        self._connect()

    def _lay_out(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.rename_button)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 6, 10)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

    def _connect(self) -> None:
        self.new_button.clicked.connect(self.new_requested)
        self.rename_button.clicked.connect(self.start_rename)
        self.delete_button.clicked.connect(self._delete_current)
        self.search.textChanged.connect(lambda _text: self._search_timer.start())
        self._search_timer.timeout.connect(lambda: self.search_changed.emit(self.search.text().strip()))
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemChanged.connect(self._item_edited)

    # --- showing ---

    def show_conversations(self, summaries: list[ConversationSummary], current_id: str | None) -> None:
        self._filling = True
        self.list.clear()
        for summary in summaries:
            item = QListWidgetItem(summary.title or UNTITLED)
            item.setData(_ID, summary.id)
            item.setToolTip(f"{summary.title or UNTITLED}\n{summary.message_count} messages · "
                            f"{_age(summary.updated_at)}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(item)
        self._filling = False
        self.highlight(current_id)

    def highlight(self, conversation_id: str | None) -> None:
        self._filling = True
        row = self.row_of(conversation_id)
        self.list.setCurrentRow(row)
        self._filling = False
        self._refresh_buttons()

    def set_title(self, conversation_id: str, title: str) -> None:
        """Show a chat's new title (the first question names a new chat) without listing the chats again."""
        row = self.row_of(conversation_id)
        item = self.list.item(row) if row >= 0 else None
        if item is None or item.text() == title:
            return
        _, newline, details = item.toolTip().partition("\n")
        self._filling = True  # not a rename by the user
        item.setText(title)
        item.setToolTip(title + newline + details)
        self._filling = False

    def row_of(self, conversation_id: str | None) -> int:
        return next((row for row in range(self.list.count())
                     if self.list.item(row).data(_ID) == conversation_id), -1)

    def ids(self) -> list[str]:
        return [self.list.item(row).data(_ID) for row in range(self.list.count())]

    def titles(self) -> list[str]:
        return [self.list.item(row).text() for row in range(self.list.count())]

    def current_id(self) -> str | None:
        item = self.list.currentItem()
        return item.data(_ID) if item else None

    # --- user intent ---

    def start_rename(self) -> None:
        item = self.list.currentItem()
        if item:
            self.list.editItem(item)

    def _delete_current(self) -> None:
        if self.current_id():
            self.delete_requested.emit(self.current_id())

    def _current_changed(self, current: QListWidgetItem | None, _previous) -> None:
        self._refresh_buttons()
        if current is not None and not self._filling:
            self.chosen.emit(current.data(_ID))

    def _item_edited(self, item: QListWidgetItem) -> None:
        if not self._filling and item.text().strip():
            self.rename_requested.emit(item.data(_ID), item.text().strip())

    def _refresh_buttons(self) -> None:
        has_current = self.list.currentItem() is not None
        self.rename_button.setEnabled(has_current)
        self.delete_button.setEnabled(has_current)


def _button(text: str, accessible_name: str, object_name: str = "") -> QPushButton:
    button = QPushButton(text)
    button.setAccessibleName(accessible_name)
    if object_name:
        button.setObjectName(object_name)
    return button


def _age(timestamp: float) -> str:
    seconds = max(time.time() - timestamp, 0)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"
