"""The run command (tools/dev.py) makes sure the window can open before it starts the app.

tools/dev.py is run as the README runs it, in a child process, with its real dpkg look-ups and its real Qt
check. The install itself (apt-get as root) reaches the network, so no test runs it: `root=False` takes the
path of a user who is not root, whatever this test process is; the root path was checked by hand on Debian 12
(libxcb-cursor0 removed, then installed again by the run command).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.gui.test_platform_start import needs_hiding, without_libraries

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120
NO_SUCH_PACKAGE = "llamadesk-no-such-package"


def run_dev(code: str, command_prefix: list[str] | None = None, **env_changes: str) -> subprocess.CompletedProcess:
    """Run `code` with tools/dev.py imported as `dev` (standard library only, as on a fresh machine)."""
    script = f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); import dev\n" + textwrap.dedent(code)
    command = [*(command_prefix or []), sys.executable, "-c", script]
    return subprocess.run(command, cwd=ROOT, env=dict(os.environ, **env_changes), capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _has_apt() -> bool:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import dev
    finally:
        sys.path.pop(0)
    return dev.uses_apt()


needs_apt = pytest.mark.skipif(not _has_apt(), reason="a Debian-like system (dpkg and apt-get)")


@needs_hiding
def test_not_root_a_window_that_cannot_open_prints_the_exact_install_line_and_fails(tmp_path):
    ensure = "dev.ensure_window_opens(dict(__import__('os').environ), root=False)"
    done = run_dev(ensure, without_libraries(["libxcb-cursor.so.0"], [], tmp_path), QT_QPA_PLATFORM="xcb")
    assert done.returncode != 0
    reason, fix = done.stderr.strip().splitlines()[-2:]
    assert reason.startswith("LlamaDesk cannot open its window: Qt's xcb window system needs libxcb-cursor.so.0")
    assert fix.startswith("Install the missing system libraries, then run again: sudo apt-get install -y ")
    assert "libxcb-cursor0" in fix.split()
    assert "apt-get update" not in done.stdout  # nothing was installed


@needs_apt
def test_a_missing_package_alone_does_not_stop_a_window_that_opens():
    """Qt started (here offscreen; on a Wayland desktop, wayland): the missing X11 package is mentioned only."""
    done = run_dev(f"dev.ensure_window_opens(dict(__import__('os').environ), [{NO_SUCH_PACKAGE!r}], root=False)",
                   QT_QPA_PLATFORM="offscreen")
    assert done.returncode == 0, done.stderr
    assert f"sudo apt-get install -y {NO_SUCH_PACKAGE}" in done.stdout


@needs_apt
def test_dpkg_tells_which_packages_are_missing():
    done = run_dev(f"print(dev.missing_debs(['dpkg', {NO_SUCH_PACKAGE!r}]))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[{NO_SUCH_PACKAGE!r}]"

