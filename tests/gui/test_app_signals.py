"""The app ended from outside — log-out or `kill` (SIGTERM), Ctrl+C in its terminal (SIGINT), or killed outright
(SIGKILL) — leaves no process of its own behind, and a polite ending saves what closing the window saves."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from core import settings as settings_store

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals")

ROOT = Path(__file__).resolve().parents[2]
WORKER_WAIT_S = 60


def _start_app_on_first_run(tmp_path: Path) -> subprocess.Popen:
    """No model anywhere, so the picker opens and starts its fit-check worker processes."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HOME=str(tmp_path / "hf"),
               HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens there: remote checks fail fast, no network
    return subprocess.Popen([sys.executable, "-m", "desktop.app"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_workers(app: subprocess.Popen) -> list[psutil.Process]:
    deadline = time.monotonic() + WORKER_WAIT_S
    while time.monotonic() < deadline:
        assert app.poll() is None, app.stderr.read()[-3000:]
        children = psutil.Process(app.pid).children(recursive=True)
        if any("spawn_main" in " ".join(child.cmdline()) for child in children if child.is_running()):
            return children
        time.sleep(0.2)
    app.kill()
    pytest.fail("the picker's worker processes never started")


def _still_running(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    deadline = time.monotonic() + within
    while True:
        running = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)


def _kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass


@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGINT])
def test_a_polite_signal_closes_the_app_as_its_window_would(tmp_path, ending):
    app = _start_app_on_first_run(tmp_path)
    children = _wait_for_workers(app)
    settings_file = settings_store.settings_path()
    try:
        app.send_signal(ending)
        assert app.wait(30) == 0, app.stderr.read()[-3000:]
        left = _still_running(children, within=5)
        assert not left, f"left running: {[p.cmdline() for p in left]}"
    finally:
        _kill_all(children)
        if app.poll() is None:
            app.kill()
    saved = json.loads(settings_file.read_text())
    assert saved["values"]["window_state"], "the window's layout was not saved on the way out"


def test_workers_end_with_an_app_killed_outright(tmp_path):
    app = _start_app_on_first_run(tmp_path)
    children = _wait_for_workers(app)
    try:
        app.kill()
        app.wait(10)
        left = _still_running(children, within=10)
        assert not left, f"left running: {[p.cmdline() for p in left]}"
    finally:
        _kill_all(children)
