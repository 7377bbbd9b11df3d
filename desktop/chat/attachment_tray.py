"""The chips above the message box: one per attached file with its token count and what it means for the loaded
model's context, and a button that takes it off; when the planner says a larger context would hold everything, a
button that asks for that reload; the sentence of a file that was refused. Shows state; PendingAttachments
decides it."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from core.fit.context_need import context_label


@dataclass(frozen=True)
class ChipView:
    id: str
    name: str
    kind: str              # "document" | "image"
    tokens: int | None     # None while it is being read
    counted: bool = True   # False: an estimate (no model loaded to count with); an image: counted when sent


def chip_text(chip: ChipView) -> str:
    # Words, not emoji: many Linux desktops have no emoji font and would draw an empty box.
    if chip.tokens is None:
        return f"{chip.name} · reading…"
    if chip.kind == "image":
        if not chip.counted:        # a projector that sizes each image by its own size (Qwen2-VL and the like)
            return f"{chip.name} · image · tokens counted when sent"
        return f"{chip.name} · image · {chip.tokens:,} tokens" if chip.tokens else f"{chip.name} · image"
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
    """Hidden while nothing is attached and nothing was refused."""

    removed = Signal(str)
    raise_requested = Signal(int)      # the context the attachments need, from the planner's "raise the context?"

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
        self.raise_button = QPushButton()
        self.raise_button.setObjectName("raiseContext")
        self.raise_button.hide()
        self.raise_button.clicked.connect(lambda: self.raise_requested.emit(self._raise_to))
        self._raise_to = 0
        self.refusal = QLabel()
        self.refusal.setObjectName("attachmentRefusal")
        self.refusal.setWordWrap(True)
        self.refusal.hide()
        fit_line = QHBoxLayout()
        fit_line.setContentsMargins(0, 0, 0, 0)
        fit_line.addWidget(self.fit, 1)
        fit_line.addWidget(self.raise_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(self.row)
        layout.addLayout(fit_line)
        layout.addWidget(self.refusal)
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
        self.refusal.hide()
        self.show()

    def remove_chip(self, chip_id: str) -> None:
        widget = self._chips.pop(chip_id, None)
        if widget is not None:
            widget.deleteLater()
        if not self._chips:
            self.clear()

    def show_fit(self, sentence: str, raise_to: int = 0) -> None:
        """The planner's sentence for everything attached, e.g. "fits the current 8k context"; with `raise_to`
        (its "raise the context?") a button that asks for a reload with that context."""
        self.fit.setText(sentence[:1].upper() + sentence[1:] if sentence else "")
        self._raise_to = raise_to
        self.raise_button.setText(f"Raise the context to {context_label(raise_to)}")
        self.raise_button.setAccessibleName(f"Reload the model with a context of {raise_to:,} tokens")
        self.raise_button.setVisible(raise_to > 0)

    def show_refusal(self, sentence: str) -> None:
        """Why a file was not attached (an image for a model without vision ...), until the next chip or send."""
        self.refusal.setText(sentence)
        self.refusal.show()
        self.show()

    def clear(self) -> None:
        for widget in self._chips.values():
            widget.deleteLater()
        self._chips.clear()
        self.show_fit("")
        self.refusal.hide()
        self.hide()
