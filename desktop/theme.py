"""The app's look: light (resources/styles/app.qss), dark (dark.qss, same object names), or the system's.

    apply_theme(app, settings.theme)       # at start, and live when the setting changes
    follow_system_theme(app)               # once: re-applies "system" when the desktop switches
    look_now()                             # the look applied now: "light" | "dark" ("light" before any)
    theme_notifier().look_changed.connect(...)   # after a new look is applied (str: the look)

Widgets with their own colours re-read look_now() on a look change: the look is recorded before the
palette and style sheet change, so their StyleChange / PaletteChange events already see the new look
(see is_look_event), or they listen to the notifier.

Dark also sets a dark palette, so the widgets no style sheet rule covers (dialogs, lists, menus) match.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from core.platform import locations
from core.settings import THEMES

THEME_LABELS = {"system": "System", "light": "Light", "dark": "Dark"}
_CHOSEN = "llamadeskTheme"  # application property: the theme last asked for
_LOOK = "llamadeskLook"     # application property: the look applied ("light" | "dark")
_STYLE_FILES = {"light": "app.qss", "dark": "dark.qss"}

_DARK_ROLES = {
    QPalette.ColorRole.Window: "#1e2227", QPalette.ColorRole.WindowText: "#e6e9ed",
    QPalette.ColorRole.Base: "#16191d", QPalette.ColorRole.AlternateBase: "#23282e",
    QPalette.ColorRole.Text: "#e6e9ed", QPalette.ColorRole.Button: "#2a3038",
    QPalette.ColorRole.ButtonText: "#e6e9ed", QPalette.ColorRole.ToolTipBase: "#2a3038",
    QPalette.ColorRole.ToolTipText: "#e6e9ed", QPalette.ColorRole.Highlight: "#4a86e8",
    QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: "#7aa7f0",
    QPalette.ColorRole.PlaceholderText: "#8a949e", QPalette.ColorRole.Mid: "#3a414a",
    QPalette.ColorRole.Dark: "#101215", QPalette.ColorRole.Light: "#3a414a",
}
_DARK_DISABLED = {QPalette.ColorRole.WindowText: "#6f7882", QPalette.ColorRole.Text: "#6f7882",
                  QPalette.ColorRole.ButtonText: "#6f7882"}


def system_look(app: QGuiApplication) -> str:
    """'dark' when the desktop asks for a dark scheme, else 'light' (also when it does not say)."""
    return "dark" if app.styleHints().colorScheme() == Qt.ColorScheme.Dark else "light"


def look_for(theme: str, app: QGuiApplication) -> str:
    if theme == "system" or theme not in THEMES:
        return system_look(app)
    return theme


def style_sheet(look: str) -> str:
    path = locations.resources_dir() / "styles" / _STYLE_FILES[look]
    return path.read_text(encoding="utf-8") if Path(path).is_file() else ""


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in _DARK_ROLES.items():
        palette.setColor(role, QColor(color))
    for role, color in _DARK_DISABLED.items():
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(color))
    return palette


def apply_theme(app: QApplication, theme: str) -> str:
    """Apply `theme` ("system" | "light" | "dark") to the whole app; returns the look applied."""
    look = look_for(theme, app)
    app.setProperty(_CHOSEN, theme)
    if app.property(_LOOK) == look:
        return look
    app.setProperty(_LOOK, look)  # first: the change events the next two lines send must see the new look
    app.setPalette(dark_palette() if look == "dark" else app.style().standardPalette())
    app.setStyleSheet(style_sheet(look))
    theme_notifier().look_changed.emit(look)
    return look


def current_look(app: QApplication) -> str:
    return app.property(_LOOK) or "light"


def look_now() -> str:
    """The look applied to the running application ("light" when there is none yet)."""
    app = QApplication.instance()
    return current_look(app) if app is not None else "light"


_LOOK_EVENTS = (QEvent.Type.StyleChange, QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)


def is_look_event(event: QEvent) -> bool:
    """An event a widget gets when the look may have changed (compare look_now() with the one it drew)."""
    return event.type() in _LOOK_EVENTS


class FollowsLook:
    """For a QWidget drawn in the app's look (list it before the Qt class): follow_look() runs when the
    look may have changed and when the widget is shown, since a widget never shown may miss the change
    events. follow_look() compares look_now() with what it drew and redraws only on a difference."""

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if is_look_event(event):
            self.follow_look()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.follow_look()

    def follow_look(self) -> None:
        raise NotImplementedError


class ThemeNotifier(QObject):
    look_changed = Signal(str)  # "light" | "dark", after apply_theme changed the look


_notifier: ThemeNotifier | None = None


def theme_notifier() -> ThemeNotifier:
    global _notifier
    if _notifier is None:
        _notifier = ThemeNotifier()
    return _notifier


def current_theme(app: QApplication) -> str:
    return app.property(_CHOSEN) or "system"


def follow_system_theme(app: QApplication) -> None:
    """Re-apply the theme when the desktop's colour scheme changes (matters only for "system")."""
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_theme(app, current_theme(app)))
