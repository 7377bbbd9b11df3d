"""Whether Qt can open a window on this computer, and when it cannot, why and how to fix it.

When no platform plugin starts (xcb without libxcb-cursor0, no X display, ...) Qt ends the process:
qFatal, then abort(). Just before, it sends its reasons (qt.qpa.* warnings) through the message handler.
PlatformStartWatch keeps those, and on the fatal message hands a PlatformStartFailure (what is wrong, in
words, and the command that fixes it) to its owner, who explains and exits before Qt aborts: a start that
failed this way is not a crash.

Run as `python -m desktop.platform_start [--json]` it is the short child process that the run command
(tools/dev.py) starts before the window: exit 0 when the platform plugin loads, else PLATFORM_START_FAILED
with the explanation on stderr (or as one JSON line on stdout with --json).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

PLATFORM_START_FAILED = 4  # the exit status of a start that Qt could not give a window
FATAL_SIGN = "no Qt platform plugin could be initialized"
CURSOR_SIGN = "xcb-cursor0 or libxcb-cursor0 is needed"
CURSOR_LIBRARY = "libxcb-cursor.so.0"
LDD_TIMEOUT_S = 10
# Libraries whose Debian package does not follow the usual soname rule (see debian_package()).
DEBIAN_EXCEPTIONS = {"libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
                     "libgobject-2.0.so.0": "libglib2.0-0"}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)
_PLUGIN_NAME = re.compile(r'platform plugin "([^"]+)"')
_AVAILABLE = re.compile(r"Available platform plugins are: ([^\n]+)")
_SONAME = re.compile(r"^(lib.+)\.so\.(\d+)")
_UNLOADABLE = re.compile(r"(lib\S+\.so[.\d]*): cannot open shared object file")


@dataclass(frozen=True)
class PlatformStartFailure:
    platform: str                            # the platform plugin Qt tried: "xcb", "wayland", ...
    reason: str                              # why, one sentence
    fix: str                                 # what the user does about it, one sentence
    missing_libraries: tuple[str, ...] = ()  # sonames the plugin could not find
    packages: tuple[str, ...] = ()           # the Debian/Ubuntu packages that provide them

    def explanation(self) -> str:
        return f"LlamaDesk could not open its window: {self.reason}\n{self.fix}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def debian_package(soname: str) -> str:
    """Debian names a library's package after its soname: libxcb-cursor.so.0 -> libxcb-cursor0,
    libxkbcommon-x11.so.0 -> libxkbcommon-x11-0 (a dash when the name ends in a digit)."""
    if soname in DEBIAN_EXCEPTIONS:
        return DEBIAN_EXCEPTIONS[soname]
    match = _SONAME.match(soname)
    if not match:
        return soname
    name, version = match.group(1).lower(), match.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def install_command(packages: tuple[str, ...] | list[str]) -> str:
    sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install -y {' '.join(packages)}"


def plugin_file(platform: str) -> Path | None:
    """The platform plugin's library in this Qt's plugin folder (PySide6's own, or the bundle's)."""
    from PySide6.QtCore import QLibraryInfo

    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    matches = sorted(folder.glob(f"*q{platform}.*")) if folder.is_dir() else []
    return matches[0] if matches else None


def libraries_not_found(library: Path) -> tuple[str, ...] | None:
    """What the dynamic loader cannot find for `library`, directly or through the libraries it needs (ldd);
    None when that cannot be found out here."""
    ldd = shutil.which("ldd")
    if ldd is None or not sys.platform.startswith("linux"):
        return None
    try:
        done = subprocess.run([ldd, str(library)], capture_output=True, text=True, timeout=LDD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return tuple(dict.fromkeys(_NOT_FOUND.findall(done.stdout))) if done.returncode == 0 else None


def diagnose(qt_messages: list[str], platform: str | None = None) -> PlatformStartFailure:
    """Turn Qt's own messages (and the plugin's missing libraries) into a reason and a fix."""
    text = "\n".join(qt_messages)
    named = _PLUGIN_NAME.findall(text)
    requested = re.split(r"[:;]", os.environ.get("QT_QPA_PLATFORM", ""))[0]
    platform = platform or (named[-1] if named else requested or "xcb")
    plugin = plugin_file(platform)
    missing = libraries_not_found(plugin) if plugin else None
    if missing is None:
        # Qt 6.5+ says this whenever its xcb plugin fails, installed or not: a guess only when ldd cannot tell.
        missing = (CURSOR_LIBRARY,) if CURSOR_SIGN in text else ()
    if missing:
        return _missing_libraries(platform, missing)
    if "could not connect to display" in text:
        display = os.environ.get("DISPLAY", "")
        where = f"the X display DISPLAY={display}" if display else "an X display (DISPLAY is not set)"
        return PlatformStartFailure(platform, f"Qt's {platform} window system could not reach {where}.",
                                    "Start LlamaDesk from your desktop session, or point DISPLAY at a running "
                                    "X server (QT_QPA_PLATFORM=wayland for a Wayland session).")
    if "Could not find the Qt platform plugin" in text:
        available = _AVAILABLE.search(text)
        choices = f": one of {available.group(1).rstrip('.')}" if available else ""
        return PlatformStartFailure(platform, f"this Qt has no {platform!r} window system (QT_QPA_PLATFORM).",
                                    f"Unset QT_QPA_PLATFORM, or set it to a window system this Qt has{choices}.")
    if "wayland" in platform and ("wl_display" in text or "WAYLAND_DISPLAY" in text):
        return PlatformStartFailure(platform, "Qt could not reach the Wayland display.",
                                    "Start LlamaDesk from your desktop session, or try QT_QPA_PLATFORM=xcb.")
    reasons = [m for m in qt_messages if FATAL_SIGN not in m]
    last = reasons[-1] if reasons else "Qt gave no reason"
    return PlatformStartFailure(platform, f"Qt could not start its {platform} window system ({last}).",
                                "Run it again with QT_DEBUG_PLUGINS=1 to see which file Qt could not load; "
                                "reinstalling LlamaDesk may fix a damaged installation.")


def _missing_libraries(platform: str, missing: tuple[str, ...], needer: str = "") -> PlatformStartFailure:
    names = ", ".join(missing)
    needs = f"{names}, which is not installed" if len(missing) == 1 else f"{names}, which are not installed"
    packages = tuple(dict.fromkeys(debian_package(name) for name in missing))
    if shutil.which("apt-get"):
        fix = f"Install {'it' if len(missing) == 1 else 'them'}, then start LlamaDesk again: {install_command(packages)}"
    else:
        fix = (f"Install your system's package for {names} (on Debian or Ubuntu: {' '.join(packages)}), "
               "then start LlamaDesk again.")
    needer = needer or f"Qt's {platform} window system"
    return PlatformStartFailure(platform, f"{needer} needs {needs}.", fix, missing, packages)


def import_failure(error: ImportError) -> PlatformStartFailure:
    """Qt's own libraries load system ones (libEGL, libxkbcommon, fontconfig): one missing, `import PySide6.QtGui`
    fails before any window system is tried."""
    missing = tuple(dict.fromkeys(_UNLOADABLE.findall(str(error))))
    if missing:
        return _missing_libraries("Qt", missing, needer="Qt")
    return PlatformStartFailure("Qt", f"Qt's libraries could not be loaded ({error}).",
                                "Reinstall LlamaDesk (from source: delete .venv and run the set-up again).")


class PlatformStartWatch:
    """Install `handle` as (or call it from) Qt's message handler before the QApplication exists."""

    def __init__(self, on_failure: Callable[[PlatformStartFailure], None], kept: int = 30) -> None:
        self._on_failure = on_failure
        self._messages: deque[str] = deque(maxlen=kept)

    def handle(self, kind, context, message: str) -> None:
        from PySide6.QtCore import QtMsgType

        category = getattr(context, "category", None) or ""
        self._messages.append(f"{category}: {message}" if category and category != "default" else message)
        if kind == QtMsgType.QtFatalMsg and FATAL_SIGN in message:
            self._on_failure(diagnose(list(self._messages)))


def end_process_for(failure: PlatformStartFailure, as_json: bool = False) -> None:
    """Say why (stderr, or stdout as JSON) and end the process before Qt's abort() would."""
    if as_json:
        print(failure.to_json(), flush=True)
    elif sys.stderr is not None:
        print(failure.explanation(), file=sys.stderr, flush=True)
    os._exit(PLATFORM_START_FAILED)


def check(as_json: bool = False) -> int:
    """Start Qt's platform plugin as the app would; 0 when it loads (its name on stdout)."""
    try:
        from PySide6.QtCore import qInstallMessageHandler
        from PySide6.QtGui import QGuiApplication
    except ImportError as error:
        end_process_for(import_failure(error), as_json)
    watch = PlatformStartWatch(lambda failure: end_process_for(failure, as_json))
    qInstallMessageHandler(watch.handle)
    app = QGuiApplication([sys.argv[0]])
    if not as_json:
        print(app.platformName(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(check(as_json="--json" in sys.argv[1:]))
