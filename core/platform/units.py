"""Human-readable figures, shared by the CLI and the window."""
from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(count: int | float | None) -> str:
    if count is None:
        return "—"
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def count_of(number: int, noun: str) -> str:
    """'1 token', '2 tokens'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
