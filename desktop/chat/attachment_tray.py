"""The chips above the message box: one per attached file with its token count and what it means for the loaded
model's context, and a button that takes it off. Shows state; PendingAttachments decides it."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget


@dataclass(frozen=True)
class ChipView:
    id: str
    name: str
    kind: str              # "document" | "image"
    tokens: int | None     # None while it is being read
    counted: bool = True   # False: an estimate (no model loaded to count with)


def chip_text(chip: ChipView) -> str:
    # Words, not emoji: many Linux desktops have no emoji font and would draw an empty box.
    if chip.tokens is None:
        return f"{chip.name} · reading…"
    if chip.kind == "image":
        return f"{chip.name} · image"
    tokens = f"{chip.tokens:,} tokens" if chip.counted else f"≈{chip.tokens:,} tokens"
    return f"{chip.name} · {tokens}"


class AttachmentChip(QFrame):
    removed = Signal(str)

    def __init__(self, chip: ChipView, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("attachmentChip")
        self.chip_id = chip.id
        self.label = QLabel(chip_text(chip))
        self.label.setObjectName("chipLabel")
        self.remove_button = QToolButton()
        self.remove_button.setText("✕")
        self.remove_button.setAccessibleName(f"Remove {chip.name}")
        self.remove_button.clicked.connect(lambda: self.removed.emit(self.chip_id))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 2, 2)
        layout.addWidget(self.label)
        layout.addWidget(self.remove_button)

    def show_chip(self, chip: ChipView) -> None:
        self.label.setText(chip_text(chip))


class AttachmentTray(QWidget):
    """Hidden while nothing is attached."""

    removed = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("attachmentTray")
        self.setAccessibleName("Attached files")
        self._chips: dict[str, AttachmentChip] = {}
        self.row = QHBoxLayout()
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.addStretch(1)
        self.fit = QLabel()
        self.fit.setObjectName("attachmentFit")
        self.fit.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(self.row)
        layout.addWidget(self.fit)
        self.hide()

    def chips(self) -> list[AttachmentChip]:
        return list(self._chips.values())

    def show_chip(self, chip: ChipView) -> None:
        widget = self._chips.get(chip.id)
        if widget is None:
            widget = self._chips[chip.id] = AttachmentChip(chip)
            widget.removed.connect(self.removed)
            self.row.insertWidget(self.row.count() - 1, widget)
        widget.show_chip(chip)
        self.show()

    def remove_chip(self, chip_id: str) -> None:
        widget = self._chips.pop(chip_id, None)
        if widget is not None:
            widget.deleteLater()
        if not self._chips:
            self.clear()

    def show_fit(self, sentence: str) -> None:
        """The planner's sentence for everything attached, e.g. "fits the current 8k context"."""
        self.fit.setText(sentence[:1].upper() + sentence[1:] if sentence else "")

    def clear(self) -> None:
        for widget in self._chips.values():
            widget.deleteLater()
        self._chips.clear()
        self.fit.clear()
        self.hide()
