"""How full the model's context was after the last answer: a thin bar and "1,234 / 4,096 tokens", and how many
tokens of earlier thinking the model's template did not send again (the context those old thoughts did not take)."""
from __future__ import annotations

from PySide6.QtWidgets import QProgressBar

WARN_FRACTION = 0.85


class ContextBar(QProgressBar):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("contextBar")
        self.setAccessibleName("Context used")
        self.setTextVisible(True)
        self.setFixedHeight(16)
        self.show_usage(None)

    def show_usage(self, usage: tuple[int, int] | None, thinking_saved: int = 0) -> None:
        if not usage or usage[1] <= 0:
            self.setRange(0, 1)
            self.setValue(0)
            self.setFormat("Context use: shown after the first answer")
            self.setProperty("level", "normal")
        else:
            used, size = usage
            self.setRange(0, size)
            self.setValue(min(used, size))
            saved = f" · {thinking_saved:,} tokens of earlier thinking not resent" if thinking_saved > 0 else ""
            self.setFormat(f"Context {used:,} / {size:,} tokens ({used / size:.0%}){saved}")
            self.setProperty("level", "high" if used / size >= WARN_FRACTION else "normal")
        self.setAccessibleDescription(self.format())
        self.style().unpolish(self)
        self.style().polish(self)
