"""When Qt cannot open a window, the app says why and how to fix it, and the next start sees no crash.

The failures are real: the app runs in a child process whose loader cannot find a library (a private mount
namespace hides it from the system library folder, as on a machine without the package; dpkg there still
lists it), or whose X display does not exist. What these tests do not prove: that the apt line installs the
package (tests must not reach the network; tools/dev.py's root path was checked by hand, see its tests).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.crash_report import CrashRecorder, crash_dir
from desktop.platform_start import PLATFORM_START_FAILED, debian_package, libraries_not_found, plugin_file

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120
NO_SUCH_DISPLAY = ":87"  # a local display number nobody serves (no network lookup, unlike host:0)


def _can_hide_libraries() -> bool:
    if not sys.platform.startswith("linux") or not shutil.which("unshare") or not shutil.which("ldconfig"):
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


needs_hiding = pytest.mark.skipif(not _can_hide_libraries(),
                                  reason="hiding a library needs Linux and a private mount namespace (root)")


def _library_paths(name: str) -> list[Path]:
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    return [Path(line.split("=>")[-1].strip()).resolve() for line in listing.splitlines()
            if "=>" in line and line.split()[0] == name]


def without_libraries(names: list[str], command: list[str], scratch: Path) -> list[str]:
    """`command` run where the dynamic loader (and ldd) cannot find `names`: in a private mount namespace, each
    library's folder is covered by a folder of links to everything in it but those libraries."""
    folders = sorted({path.parent for name in names for path in _library_paths(name)})
    steps = ["set -e"]
    for index, folder in enumerate(folders):
        real, view = scratch / f"real{index}", scratch / f"view{index}"
        real.mkdir(parents=True)
        view.mkdir()
        q = shlex.quote
        steps += [f"mount --bind {q(str(folder))} {q(str(real))}",
                  f"ln -s {q(str(real))}/* {q(str(view))}/",
                  *(f"rm -f {q(str(view / name))}*" for name in names),
                  f"mount --bind {q(str(view))} {q(str(folder))}"]
    steps.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(steps), "sh", *command]


def start_app(command_prefix: list[str] | None = None, **env_changes: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_changes)
    command = [*(command_prefix or []), sys.executable, "-m", "desktop.app"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S)


def assert_no_crash_for_the_next_start() -> None:
    """What the next start does (desktop/app.py): adopt the runs that are gone, then offer unseen reports."""
    recorder = CrashRecorder()
    assert recorder.collect_leftovers() == []
    assert recorder.unseen() == []
    assert not list(crash_dir().glob("run-*.txt"))


@needs_hiding
def test_a_missing_xcb_library_is_named_with_its_install_line_and_is_no_crash(tmp_path):
    app = [sys.executable, "-m", "desktop.app"]
    done = subprocess.run(without_libraries(["libxcb-cursor.so.0"], app, tmp_path), cwd=ROOT,
                          env=dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=NO_SUCH_DISPLAY),
                          capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert done.returncode == PLATFORM_START_FAILED, done.stderr[-3000:]
    explanation = done.stderr.strip().splitlines()[-2:]
    assert explanation[0].startswith("LlamaDesk could not open its window: Qt's xcb window system needs ")
    assert "libxcb-cursor.so.0" in explanation[0]
    assert "apt-get install -y " in explanation[1] and "libxcb-cursor0" in explanation[1].split()
    assert_no_crash_for_the_next_start()
    assert "libxcb-cursor.so.0" in (crash_dir().parent / "llamadesk.log").read_text()  # and the log says so too


@needs_hiding
def test_a_missing_library_of_qt_itself_is_named_before_any_window_system(tmp_path):
    """libEGL.so.1 missing: importing PySide6.QtGui fails, before a QApplication or the crash recorder."""
    app = [sys.executable, "-m", "desktop.app"]
    done = subprocess.run(without_libraries(["libEGL.so.1"], app, tmp_path), cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert done.returncode == PLATFORM_START_FAILED, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    reason, fix = done.stderr.strip().splitlines()
    assert reason == "LlamaDesk could not open its window: Qt needs libEGL.so.1, which is not installed."
    assert fix.endswith("apt-get install -y libegl1")
    assert_no_crash_for_the_next_start()
    assert "libEGL.so.1" in (crash_dir().parent / "llamadesk.log").read_text()


def _xcb_libraries_present() -> bool:
    plugin = plugin_file("xcb")
    return plugin is not None and libraries_not_found(plugin) == ()


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _xcb_libraries_present(),
                    reason="needs Linux with every library of Qt's xcb plugin installed")
def test_a_display_that_does_not_answer_is_explained_and_is_no_crash():
    done = start_app(QT_QPA_PLATFORM="xcb", DISPLAY=NO_SUCH_DISPLAY)
    assert done.returncode == PLATFORM_START_FAILED, done.stderr[-3000:]
    reason, fix = done.stderr.strip().splitlines()[-2:]
    assert reason == f"LlamaDesk could not open its window: Qt's xcb window system could not reach the X display " \
                     f"DISPLAY={NO_SUCH_DISPLAY}."
    assert "desktop session" in fix
    assert_no_crash_for_the_next_start()


@needs_hiding
def test_the_check_before_the_window_gives_the_same_account_as_json(tmp_path):
    check = [sys.executable, "-m", "desktop.platform_start", "--json"]
    done = subprocess.run(without_libraries(["libxcb-cursor.so.0"], check, tmp_path), cwd=ROOT,
                          env=dict(os.environ, QT_QPA_PLATFORM="xcb"), capture_output=True, text=True,
                          timeout=START_TIMEOUT_S)
    assert done.returncode == PLATFORM_START_FAILED, done.stderr[-3000:]
    failure = json.loads(done.stdout)
    assert failure["platform"] == "xcb"
    assert "libxcb-cursor.so.0" in failure["missing_libraries"] and "libxcb-cursor0" in failure["packages"]
    assert done.stderr == ""  # Qt's own lines went to the check, not to the terminal


def test_a_window_system_this_qt_lacks_is_named_with_the_ones_it_has():
    done = start_app(QT_QPA_PLATFORM="nosuch")
    assert done.returncode == PLATFORM_START_FAILED, done.stderr[-3000:]
    reason, fix = done.stderr.strip().splitlines()[-2:]
    assert reason == "LlamaDesk could not open its window: this Qt has no 'nosuch' window system (QT_QPA_PLATFORM)."
    assert fix.startswith("Unset QT_QPA_PLATFORM, or set it to a window system this Qt has: one of ")
    assert "offscreen" in fix
    assert_no_crash_for_the_next_start()


def test_the_check_passes_where_qt_can_start():
    done = subprocess.run([sys.executable, "-m", "desktop.platform_start"], cwd=ROOT,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True,
                          timeout=START_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "offscreen"


@pytest.mark.parametrize("soname, package", [
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libEGL.so.1", "libegl1"), ("libX11-xcb.so.1", "libx11-xcb1"), ("libdbus-1.so.3", "libdbus-1-3"),
    ("libglib-2.0.so.0", "libglib2.0-0"),
])
def test_a_library_is_named_by_its_debian_package(soname, package):
    assert debian_package(soname) == package
