"""The picker's own style rules, in the app's light or dark look (desktop/theme.py decides which is on).

The rules use the app's object names where they exist (offloadVerdict, offloadResults, ...), so the picker
matches the rest of the window; picker.qss / picker-dark.qss only add the picker's own names.
"""
from __future__ import annotations

from pathlib import Path

_FILES = {"light": "picker.qss", "dark": "picker-dark.qss"}


def style_sheet(look: str) -> str:
    path = Path(__file__).with_name(_FILES.get(look, "picker.qss"))
    return path.read_text(encoding="utf-8") if path.is_file() else ""
