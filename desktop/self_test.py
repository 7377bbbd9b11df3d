"""`llamadesk --self-test MODEL.gguf`: prove, without a person, that this installation can chat.

It drives the real main window the way a user does: the window opens the model (MainWindow.open_model),
a fixed question is typed into the chat panel and sent, the answer streams in. Then one JSON object is
written (timings, tokens, memory, the answer) and the app quits with 0, or with a non-zero code and the
reason in the JSON when anything fails or takes longer than the time limit. A bundle is smoke-tested
this way: `xvfb-run -a dist/LlamaDesk/LlamaDesk --self-test model.gguf --self-test-result out.json`.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psutil
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)

PROMPT = "In one short sentence: what is the capital of France?"
DEFAULT_TIMEOUT_S = 180.0
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMED_OUT = 3


@dataclass(frozen=True)
class SelfTestResult:
    ok: bool
    model: str
    reason: str = ""
    prompt: str = PROMPT
    answer: str = ""
    load_seconds: float | None = None
    ttft_seconds: float | None = None
    prompt_tokens: int | None = None
    tokens: int | None = None
    tokens_per_second: float | None = None
    backend: str | None = None
    n_gpu_layers: int | None = None
    engine_resident_bytes: int | None = None
    app_resident_bytes: int | None = None
    window_shown_seconds: float | None = None   # process start -> main window first exposed
    wall_seconds: float | None = None           # process start -> result written
    bundled: bool = field(default_factory=lambda: bool(getattr(sys, "frozen", False)))
    qt_platform: str = ""
    pid: int = field(default_factory=os.getpid)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def process_age_seconds() -> float:
    """Seconds since the OS started this process (so the bootloader and imports are counted too)."""
    return time.time() - psutil.Process().create_time()


def resident_bytes(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.Error, OSError):
        return None


class FirstExposure(QObject):
    """Notes how long after process start a window was first exposed (really on screen)."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.seconds: float | None = None
        window.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if self.seconds is None and event.type() in (QEvent.Type.Expose, QEvent.Type.Paint):
            if watched.isVisible():
                self.seconds = process_age_seconds()
                watched.removeEventFilter(self)
        return False


class SelfTest(QObject):
    """Opens the model through the window, asks PROMPT, writes a SelfTestResult, quits the app."""

    def __init__(self, window, model_path: str, result_path: Path | None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(window)
        self.window = window
        self.result = SelfTestResult(ok=False, model=str(Path(model_path).resolve()),
                                     qt_platform=QApplication.platformName())
        self.result_path = result_path
        self.timeout_s = timeout_s
        self.exposure = FirstExposure(window)
        self._done = False
        self._asked = False
        self._deadline = QTimer(self, singleShot=True, interval=int(timeout_s * 1000))
        self._deadline.timeout.connect(self._timed_out)
        self.window.model_open_failed.connect(lambda sentence: self._fail(f"The window showed an error: {sentence}"))

    def start(self) -> None:
        session = self.window.session
        session.loaded.connect(self._loaded)
        session.load_failed.connect(lambda sentence: self._fail(f"The model did not load: {sentence}"))
        session.answer_finished.connect(self._answered)
        session.answer_failed.connect(lambda sentence, _partial: self._fail(f"The answer failed: {sentence}"))
        self._deadline.start()
        log.info("Self-test: opening %s", self.result.model)
        self.window.open_model(self.result.model)

    # --- steps ---

    def _loaded(self, loaded) -> None:
        if self._asked or self._done:
            return
        self._asked = True
        self.result = replace(self.result, load_seconds=round(loaded.load_seconds, 3), backend=loaded.backend,
                              n_gpu_layers=loaded.n_gpu_layers, engine_resident_bytes=loaded.resident_bytes)
        log.info("Self-test: model loaded in %.2f s; asking %r", loaded.load_seconds, PROMPT)
        if self.window.chat is None:
            self.window.chat_ready.connect(self._ask)
        else:
            self._ask()

    def _ask(self) -> None:
        pane = self.window.chat.pane
        pane.composer.setPlainText(PROMPT)
        pane.send_button.click()
        if pane.composer.toPlainText():
            self._fail("The chat did not accept the question (its Send button is disabled).")

    def _answered(self, finished) -> None:
        stats = finished.stats
        self.result = replace(
            self.result, answer=finished.text, ttft_seconds=round(stats.ttft_seconds, 4),
            prompt_tokens=stats.prompt_tokens, tokens=stats.completion_tokens,
            tokens_per_second=round(stats.tokens_per_second, 2))
        if not finished.text.strip():
            self._fail("The model answered with empty text.")
        else:
            self._finish(True, "")

    def _timed_out(self) -> None:
        self._finish(False, f"No answer within {self.timeout_s:.0f} s (the self-test's time limit).",
                     EXIT_TIMED_OUT)

    def _fail(self, reason: str) -> None:
        self._finish(False, reason, EXIT_FAILED)

    # --- the end ---

    def _finish(self, ok: bool, reason: str, code: int = EXIT_OK) -> None:
        if self._done:
            return
        self._done = True
        self._deadline.stop()
        self.result = replace(
            self.result, ok=ok, reason=reason, window_shown_seconds=_rounded(self.exposure.seconds),
            engine_resident_bytes=(resident_bytes(self.window.session.engine_pid)
                                   or self.result.engine_resident_bytes),
            app_resident_bytes=resident_bytes(os.getpid()), wall_seconds=round(process_age_seconds(), 3))
        self._write()
        (log.info if ok else log.error)("Self-test %s%s", "passed" if ok else "failed: ", reason)
        QApplication.instance().exit(code if not ok else EXIT_OK)

    def _write(self) -> None:
        text = self.result.to_json()
        if self.result_path is not None:
            self.result_path.parent.mkdir(parents=True, exist_ok=True)
            self.result_path.write_text(text + "\n", encoding="utf-8")
        if sys.stdout is not None:
            print(text, flush=True)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def start_self_test(window, model_path: str, result_path: str | None,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> SelfTest:
    test = SelfTest(window, model_path, Path(result_path) if result_path else None, timeout_s)
    test.start()
    return test
