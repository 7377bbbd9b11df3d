"""Render the main screens in a real window (run under Xvfb by `make screenshots`) and save PNGs.

Each scene drives the app the way a user would, waits until the screen settles, then grabs the whole
screen, so what is saved is what a person would see.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("LLAMADESK_SCREENSHOTS", ROOT / "screenshots"))
os.environ.setdefault("LLAMADESK_HOME", tempfile.mkdtemp(prefix="llamadesk-screens-"))
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QCoreApplication, QEventLoop, QTimer  # noqa: E402

from core.settings import Settings  # noqa: E402
from desktop.app import create_application  # noqa: E402


def settle(seconds: float) -> None:
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the screen did not reach the expected state")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.02)


def shoot(app, name: str) -> Path:
    settle(1.2)  # let the memory strip take a sample and the window paint
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    app.primaryScreen().grabWindow(0).save(str(path))
    print(f"saved {path}")
    return path


def main() -> int:
    model = Path(os.environ["LLAMADESK_TEST_MODEL"])
    app = create_application([sys.argv[0]])
    from desktop.main_window import MainWindow

    window = MainWindow(Settings(threads=2))
    window.resize(1340, 840)
    window.move(20, 20)
    window.show()
    wait_until(lambda: window.chat is not None)
    shoot(app, "01-first-start-no-model")

    bad = Path(os.environ["LLAMADESK_HOME"]) / "holiday-photos.gguf"
    bad.write_text("not a model")
    window.open_model(str(bad))
    wait_until(window.notice.isVisible)
    shoot(app, "02-not-a-gguf-file")

    finished = []
    window.session.answer_finished.connect(finished.append)
    window.open_model(str(model))
    pane = window.chat.pane
    wait_until(lambda: pane.send_button.isEnabled())
    pane.composer.setPlainText("Write a short Python function that reverses a string, with an example.")
    pane.send_button.click()
    wait_until(lambda: finished)
    pane.composer.setPlainText("Now explain it in one sentence.")
    shoot(app, "03-chat-with-smollm2")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
