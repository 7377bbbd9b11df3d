"""The app's own health checks, run as a user's installation would run them.

- `llamadesk --self-test MODEL` from source (offscreen): opens the window, loads the model through the
  window, streams one answer, writes the JSON result, exits 0; and fails with a reason otherwise.
- Crash reports: a GUI process that dies leaves a report; the next start offers it in the window's notice bar
  (not over the chat); it is then seen.
(The same self-test on the PyInstaller bundle is in tests/unit/test_packaging.py.)
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QDialog, QPlainTextEdit, QVBoxLayout, QWidget

from core.settings import Settings
from desktop.crash_report import EXCEPTION_QUESTION, FATAL_QUESTION, CrashRecorder, crash_dir, offer_unseen_reports
from desktop.widgets.notice_bar import NoticeBar

ROOT = Path(__file__).resolve().parents[2]
SELF_TEST_TIMEOUT_S = 240


def run_self_test(model: Path, result: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    command = [sys.executable, "-m", "desktop.app", "--self-test", str(model), "--self-test-result", str(result),
               *extra]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SELF_TEST_TIMEOUT_S)


@pytest.mark.model
def test_self_test_from_source_chats_and_writes_its_result(smollm2, tmp_path):
    result_path = tmp_path / "result.json"
    done = run_self_test(smollm2, result_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(result_path.read_text())
    assert result["ok"] is True and result["reason"] == ""
    assert result["model"] == str(smollm2.resolve())
    assert result["answer"].strip()
    assert result["tokens"] > 0 and result["prompt_tokens"] > 0
    assert result["tokens_per_second"] > 0
    assert 0 < result["ttft_seconds"] < 120
    assert 0 < result["load_seconds"] < 120
    assert result["engine_resident_bytes"] > 50 * 2**20   # the model's weights live in the engine
    assert result["app_resident_bytes"] > 0
    assert 0 < result["window_shown_seconds"] <= result["wall_seconds"]
    assert result["bundled"] is False and result["qt_platform"] == "offscreen"
    assert json.loads(done.stdout) == result   # printed as well, for a terminal or a CI log


def test_self_test_fails_with_the_reason_when_the_file_is_not_a_model(tmp_path):
    not_a_model = tmp_path / "notes.gguf"
    not_a_model.write_text("these are notes, not a language model\n")
    result_path = tmp_path / "result.json"
    done = run_self_test(not_a_model, result_path)
    assert done.returncode == 1
    result = json.loads(result_path.read_text())
    assert result["ok"] is False
    assert "notes.gguf" in result["reason"]
    assert result["answer"] == "" and result["tokens"] is None


@pytest.mark.model
def test_self_test_gives_up_after_its_time_limit(smollm2, tmp_path):
    result_path = tmp_path / "result.json"
    done = run_self_test(smollm2, result_path, "--self-test-timeout", "0.05")
    assert done.returncode == 3
    result = json.loads(result_path.read_text())
    assert result["ok"] is False and "time limit" in result["reason"]


# --- crash reports ---------------------------------------------------------------------------------------

def window_with_notice_bar(qtbot) -> tuple[QWidget, NoticeBar]:
    window = QWidget()
    bar = NoticeBar()
    QVBoxLayout(window).addWidget(bar)
    qtbot.addWidget(window)
    window.show()
    return window, bar


def answer(bar: NoticeBar, label: str) -> None:
    [button] = [b for b in bar.answer_buttons if b.text() == label]
    button.click()


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)


def test_a_fatal_crash_leaves_a_report_that_the_next_start_offers_once(qtbot):
    died = run_python("""
        import faulthandler
        from desktop.crash_report import CrashRecorder
        CrashRecorder().begin_run()
        faulthandler._sigsegv()
    """)
    assert died.returncode in (-signal.SIGSEGV, 128 + signal.SIGSEGV, 3221225477), died.stderr
    recorder = CrashRecorder()
    recorder.collect_leftovers()
    [report] = recorder.unseen()
    assert report.is_fatal and report.question == FATAL_QUESTION
    assert "Segmentation fault" in report.text() and "stopped abruptly" in report.text()
    assert not list(crash_dir().glob("run-*.txt"))

    window, bar = window_with_notice_bar(qtbot)
    assert offer_unseen_reports(bar, recorder) == report
    assert bar.isVisible() and bar.text().startswith(FATAL_QUESTION)
    answer(bar, "Not now")
    assert not bar.isVisible()
    assert recorder.unseen() == []
    assert offer_unseen_reports(bar, recorder) is None
    assert len(list(crash_dir().glob("*.seen.txt"))) == 1


def test_dismissing_the_offer_also_marks_the_report_seen(qtbot):
    recorder = CrashRecorder()
    recorder.folder.mkdir(parents=True)
    (recorder.folder / "run-999999-1700000000.txt").write_text("Fatal Python error: Aborted\n")
    recorder.collect_leftovers()
    window, bar = window_with_notice_bar(qtbot)
    offer_unseen_reports(bar, recorder)
    bar.close_button.click()
    assert not bar.isVisible() and recorder.unseen() == []


def test_showing_a_report_opens_its_text(qtbot):
    recorder = CrashRecorder()
    recorder.folder.mkdir(parents=True)
    try:
        raise ValueError("a slot went wrong")
    except ValueError as error:
        recorder.record_exception(type(error), error, error.__traceback__)
    window, bar = window_with_notice_bar(qtbot)
    offer_unseen_reports(bar, recorder)
    assert bar.text().startswith(EXCEPTION_QUESTION)
    answer(bar, "Show the report")
    viewer = window.findChild(QWidget, "crashReportViewer")
    assert viewer is not None and viewer.isVisible()
    [text] = viewer.findChildren(QPlainTextEdit)
    assert "ValueError: a slot went wrong" in text.toPlainText()
    assert recorder.unseen() == []


def test_an_unhandled_exception_is_written_down_and_a_clean_exit_leaves_nothing_behind():
    done = run_python("""
        from desktop.crash_report import CrashRecorder
        recorder = CrashRecorder()
        recorder.begin_run()
        import threading
        worker = threading.Thread(target=lambda: 1 / 0, name="sampler")
        worker.start(); worker.join()
        recorder.end_run()
    """)
    assert done.returncode == 0, done.stderr
    recorder = CrashRecorder()
    [report] = recorder.unseen()
    assert not report.is_fatal
    assert "ZeroDivisionError" in report.text() and "thread 'sampler'" in report.text()
    assert not list(crash_dir().glob("run-*.txt"))


def test_a_run_killed_without_a_trace_leaves_no_report():
    folder = crash_dir()
    folder.mkdir(parents=True)
    (folder / "run-999999-1700000000.txt").write_text("")
    recorder = CrashRecorder()
    assert recorder.collect_leftovers() == []
    assert recorder.unseen() == [] and not list(folder.iterdir())


def test_the_app_adopts_an_earlier_crash_and_leaves_no_trace_of_a_clean_run(tmp_path):
    folder = crash_dir()
    folder.mkdir(parents=True)
    (folder / "run-999999-1700000000.txt").write_text("Fatal Python error: Aborted\n")
    not_a_model = tmp_path / "empty.gguf"
    not_a_model.write_bytes(b"")
    done = run_self_test(not_a_model, tmp_path / "result.json")
    assert done.returncode == 1   # the self-test failed (an empty file), but the app ran and exited cleanly
    [report] = CrashRecorder().unseen()   # a self-test never asks: the report waits for a person
    assert "Fatal Python error: Aborted" in report.text()
    assert not list(folder.glob("run-*.txt"))
    assert "LlamaDesk starting" in (folder.parent / "llamadesk.log").read_text()


def test_the_main_window_asks_in_its_notice_bar_and_leaves_the_chat_in_view(qtbot):
    """The offer sits in the window's own layout, between the model bar and the chat: no floating box covers the
    answer, and a model's notices (which replace each other) do not replace the question."""
    from desktop.main_window import MainWindow

    recorder = CrashRecorder()
    recorder.folder.mkdir(parents=True)
    (recorder.folder / "run-999999-1700000000.txt").write_text("Fatal Python error: Aborted\n")
    recorder.collect_leftovers()
    window = MainWindow(Settings())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.chat is not None, timeout=10_000)
    offer_unseen_reports(window.crash_notice, recorder)
    window.notice.show_error("The model could not be loaded: not a GGUF file")
    window.notice.hide()
    assert window.crash_notice.isVisible() and window.crash_notice.text().startswith(FATAL_QUESTION)
    assert window.crash_notice.window() is window
    notice_bottom = window.crash_notice.mapTo(window, window.crash_notice.rect().bottomLeft()).y()
    assert notice_bottom <= window.chat.mapTo(window, window.chat.rect().topLeft()).y()
    floating = [w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog) and w.isVisible()]
    assert floating == []
