"""Fit badges: the planner's verdict as a short text and a kind the style sheet colours (never colour alone)."""
from __future__ import annotations

import re

from core.fit.planner import CPU_ONLY, FULL, TOO_LARGE, Plan
from desktop.models.picker.rows import PickerRow

CHECKING = "Checking…"
UNKNOWN = "Unknown"
WITH_WORKERS = "Fits with your workers"
_PARTIAL = re.compile(r"Partial: (\d+) of (\d+) layers on GPU")

# kind -> (light background, light text, dark background, dark text). Each text/background pair has a contrast
# ratio of at least 4.5:1 (tests check it); the table paints a badge as its own pill over the cell, so the pair holds
# on a selected or hovered row too.
COLOURS = {
    "full": ("#dff3e5", "#1c6b36", "#1f3b29", "#7fd69b"),
    "partial": ("#e3ecfb", "#1b4a8a", "#1b2d4a", "#9cc0f5"),
    "cpu": ("#eceff2", "#3c4650", "#2f353c", "#d0d6dc"),
    "too-large": ("#fdecea", "#b3261e", "#4a1f1b", "#ff9b90"),
    "unknown": ("#fff4e0", "#6b4a12", "#45361b", "#f0cf8f"),
    "checking": ("#f3f4f6", "#5b6670", "#23282e", "#a3acb5"),
}


def badge_text(row: PickerRow) -> str:
    if row.fit is None:
        return CHECKING
    if row.fit.plan is None:
        return UNKNOWN
    if row.fit.plan.fits and uses_workers(row.fit.plan):
        return WITH_WORKERS
    return short_verdict(row.fit.plan.verdict)


def uses_workers(plan: Plan) -> bool:
    """Whether the plan puts weights on another computer's device (llamadesk-cli worker)."""
    return any(device.kind == "worker" and device.weights_bytes > 0 for device in plan.devices)


def short_verdict(verdict: str) -> str:
    """'Partial: 28 of 33 layers on GPU' -> 'Partial 28/33 on GPU'; 'Too large for this machine' -> 'Too large'."""
    partial = _PARTIAL.fullmatch(verdict)
    if partial:
        return f"Partial {partial[1]}/{partial[2]} on GPU"
    return "Too large" if verdict == TOO_LARGE else verdict


def badge_kind(row: PickerRow) -> str:
    if row.fit is None:
        return "checking"
    if row.fit.plan is None:
        return "unknown"
    return {FULL: "full", CPU_ONLY: "cpu", TOO_LARGE: "too-large"}.get(row.fit.plan.verdict, "partial")


def relative_luminance(colour: str) -> float:
    """WCAG 2 relative luminance of '#rrggbb'."""
    channels = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two '#rrggbb' colours (1 to 21); body text needs at least 4.5."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def badge_colours(kind: str, dark: bool) -> tuple[str, str]:
    light_bg, light_fg, dark_bg, dark_fg = COLOURS[kind]
    return (dark_bg, dark_fg) if dark else (light_bg, light_fg)


def speed_text(row: PickerRow) -> str:
    speed = row.fit.tokens_per_second if row.fit is not None else None
    return f"{speed:,.0f} tok/s" if speed else "—"


def fits(row: PickerRow) -> bool:
    """For the 'Fits this machine' filter: rows not yet checked stay visible until they are known not to fit."""
    return badge_kind(row) != "too-large"


VISION = "vision"


def vision_mark(row: PickerRow) -> str:
    """' · vision' after the name of a model that has a paired projector (it can look at images)."""
    return f" · {VISION}" if row.sees_images else ""


def vision_tooltip(row: PickerRow) -> str:
    projector = row.projector
    if projector is None:
        return ""
    if projector.path is not None:
        return f"Sees images with its projector {projector.filename}, loaded with it."
    return f"Sees images with its projector {projector.filename}, downloaded with it."
