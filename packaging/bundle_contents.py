"""What goes into the LlamaDesk bundle, decided in one place (the spec and the tests both read it).

- llama.cpp's shared libraries: every library file in llama_cpp/lib, once. A wheel stores each Linux
  library three times (libggml.so, libggml.so.0, libggml.so.0.25.3 as full copies); the bundle keeps the
  name llama_cpp's loader opens (libllama.so) and the soname the libraries link to (libggml.so.0), and
  leaves out the fully versioned third copy. Shaders and other backend files (Metal's .metal/.metallib)
  travel too. They stay together in llama_cpp/lib so their RUNPATH $ORIGIN finds each other.
- resources/ (catalog, hardware profiles, styles, icons).
- Only the Qt modules the app imports: every other PySide6 module is excluded by name; and Qt plugins
  the app never needs (virtual keyboard, PDF images, embedded-display and VNC platforms, evdev input)
  are dropped together with the Qt libraries only they pulled in (Quick, Qml, Pdf, Network, ...),
  which takes about 30 MiB off the bundle.

Plain Python, no PyInstaller import: it can be tested without building.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_SOURCES = ("core", "desktop")
RESOURCES = ROOT / "resources"
LLAMA_LIB_DEST = "llama_cpp/lib"
# The fully versioned copy of a Linux library (libggml.so.0.25.3) when its soname file is there too.
_VERSIONED = re.compile(r"^(?P<soname>.+\.so\.\d+)(\.\d+)+$")
_LIBRARY_SUFFIXES = (".so", ".dylib", ".dll", ".metal", ".metallib")
_QT_IMPORT = re.compile(r"\bPySide6\.(Qt\w+)")
# Qt plugins and libraries the app never loads (matched against a bundle path, "/" separated).
_UNWANTED_QT = re.compile(
    r"plugins/(egldeviceintegrations|generic)/"
    r"|plugins/platforminputcontexts/[^/]*virtualkeyboard"
    r"|plugins/imageformats/[^/]*qpdf"
    r"|plugins/platforms/[^/]*(qeglfs|qlinuxfb|qvnc|qvkkhrdisplay|qminimalegl)"
    r"|(^|/)(lib)?Qt6?(Quick|Qml\w*|VirtualKeyboard\w*|Pdf|EglFS\w*|EglFsKms\w*|Network)[._]",
    re.IGNORECASE)
# Never wanted in the app, whatever imports them indirectly.
EXCLUDED_PYTHON_MODULES = (
    "tkinter", "_tkinter", "pytest", "_pytest", "pytestqt", "PyInstaller", "IPython", "matplotlib",
    "setuptools", "pip", "PySide6.scripts", "PySide6.support.deprecated",
)


class BundleContentsError(RuntimeError):
    """Something the bundle must carry is missing from this environment."""


def llama_cpp_lib_dir() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise BundleContentsError("llama_cpp is not installed in this environment: run the set-up first.")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def is_library_file(path: Path) -> bool:
    name = path.name
    return name.endswith(_LIBRARY_SUFFIXES) or re.search(r"\.so\.\d+(\.\d+)*$", name) is not None


def redundant_copy(path: Path) -> bool:
    """libX.so.0.25.3 beside libX.so.0: nothing opens it by that name."""
    match = _VERSIONED.match(path.name)
    return bool(match) and (path.parent / match.group("soname")).exists()


def llama_cpp_libraries(lib_dir: Path | None = None) -> list[tuple[str, str]]:
    """(source, destination folder) pairs for PyInstaller's `binaries`."""
    lib_dir = lib_dir or llama_cpp_lib_dir()
    files = sorted(p for p in lib_dir.iterdir() if p.is_file() and is_library_file(p) and not redundant_copy(p))
    if not any(p.name.startswith(("libllama", "llama")) for p in files):
        raise BundleContentsError(f"No llama library in {lib_dir}: the llama-cpp-python build is incomplete.")
    return [(str(p), LLAMA_LIB_DEST) for p in files]


def wanted_binary(bundle_path: str) -> bool:
    """False for the Qt plugins and libraries listed in _UNWANTED_QT."""
    return _UNWANTED_QT.search(bundle_path.replace("\\", "/")) is None


def resource_datas() -> list[tuple[str, str]]:
    if not (RESOURCES / "icons" / "llamadesk-256.png").is_file():
        raise BundleContentsError("The icons are not rendered yet: run packaging/make_icons.py first.")
    return [(str(RESOURCES), "resources")]


def qt_modules_used(roots: tuple[str, ...] = APP_SOURCES) -> set[str]:
    """Qt modules named anywhere in the app's sources ("QtCore", "QtWidgets", ...)."""
    used: set[str] = set()
    for root in roots:
        for source in (ROOT / root).rglob("*.py"):
            used.update(_QT_IMPORT.findall(source.read_text(encoding="utf-8", errors="replace")))
    return used


def qt_modules_installed() -> set[str]:
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        raise BundleContentsError("PySide6 is not installed in this environment: run the set-up first.")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return {p.name.split(".")[0] for p in folder.glob("Qt*.*") if p.suffix in (".so", ".pyd")}


def excluded_modules() -> list[str]:
    """Python modules PyInstaller must leave out: unused Qt modules and development tools."""
    unused_qt = sorted(qt_modules_installed() - qt_modules_used())
    return [*EXCLUDED_PYTHON_MODULES, *(f"PySide6.{name}" for name in unused_qt)]


def icon_file() -> str:
    """The icon in the format this platform's executable or app bundle wants."""
    suffix = {"win32": "ico", "darwin": "icns"}.get(sys.platform, "png")
    name = "llamadesk-256.png" if suffix == "png" else f"llamadesk.{suffix}"
    return str(RESOURCES / "icons" / name)
