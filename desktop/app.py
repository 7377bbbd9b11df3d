"""`llamadesk`: start the desktop app.

    llamadesk [MODEL.gguf]                       open the window (and MODEL, or the last/starter model)
    llamadesk --self-test MODEL.gguf [--self-test-result OUT.json] [--self-test-timeout S]
                                                 open MODEL, stream one answer, write JSON, exit 0/non-zero
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from core.platform import locations, logs
from desktop.platform_start import PlatformStartFailure, PlatformStartWatch, end_process_for, import_failure

log = logging.getLogger(__name__)

try:
    from PySide6.QtCore import QtMsgType, QTimer, qInstallMessageHandler
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication
except ImportError as _error:  # a system library Qt itself loads (libEGL.so.1, ...) is missing
    _failure = import_failure(_error)
    logs.configure(to_stderr=False)  # the log file keeps it; stderr gets the two plain lines below
    log.error("Qt could not be loaded: %s %s", _failure.reason, _failure.fix)
    end_process_for(_failure)

from core import settings as settings_store
from desktop.theme import apply_theme, follow_system_theme
from desktop.crash_report import CrashRecorder, offer_unseen_reports
from desktop.shutdown_signals import ShutdownSignals

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
CRASH_OFFER_DELAY_MS = 400
_QT_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llamadesk", description="Chat with local language models.")
    parser.add_argument("model", nargs="?", help="a .gguf model to open at start")
    parser.add_argument("--self-test", metavar="MODEL", dest="self_test",
                        help="open MODEL, stream one answer, write a JSON result and exit (0 = passed)")
    parser.add_argument("--self-test-result", metavar="PATH", dest="self_test_result",
                        help="where the self-test writes its JSON (it is printed to stdout as well)")
    parser.add_argument("--self-test-timeout", metavar="SECONDS", dest="self_test_timeout", type=float,
                        default=None, help="give up after this long (default 180)")
    return parser.parse_args(argv)


def application_icon() -> QIcon:
    icon = QIcon()
    folder = locations.resources_dir() / "icons"
    for size in ICON_SIZES:
        path = folder / f"llamadesk-{size}.png"
        if path.is_file():
            icon.addFile(str(path))
    return icon


def create_application(argv: list[str], theme: str = "light") -> QApplication:
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName(locations.APP_NAME)
    app.setOrganizationName(locations.APP_NAME)
    app.setApplicationDisplayName(locations.APP_NAME)
    app.setDesktopFileName("llamadesk")
    app.setWindowIcon(application_icon())
    apply_theme(app, theme)
    return app


def _forward_qt_message(kind: QtMsgType, _context, message: str) -> None:
    logging.getLogger("qt").log(_QT_LEVELS.get(kind, logging.INFO), "%s", message)


def _qt_message_handler(watch: PlatformStartWatch) -> Callable:
    def handle(kind: QtMsgType, context, message: str) -> None:
        _forward_qt_message(kind, context, message)
        watch.handle(kind, context, message)
    return handle


def _platform_start_failed(failure: PlatformStartFailure, recorder: CrashRecorder | None) -> None:
    """Qt found no way to open a window: say why on stderr and leave, a failed start rather than a crash."""
    log.error("Qt could not start its %s window system: %s %s", failure.platform, failure.reason, failure.fix)
    if recorder is not None:
        recorder.end_run()  # Qt's abort() would leave a crash trace for the next start to offer
    logging.shutdown()
    end_process_for(failure)


def _start_crash_recorder() -> CrashRecorder | None:
    recorder = CrashRecorder()
    try:
        recorder.begin_run()
    except OSError as error:
        log.warning("Crash reports are off for this run: %s", error)
        return None
    return recorder


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    arguments = parse_arguments(argv)
    log_path = logs.configure()
    recorder = _start_crash_recorder()  # before this run logs: a report takes the last run's log lines
    log.info("LlamaDesk starting (log file: %s)", log_path)
    watch = PlatformStartWatch(lambda failure: _platform_start_failed(failure, recorder))
    qInstallMessageHandler(_qt_message_handler(watch))
    try:
        return _run(arguments, argv, recorder)
    except Exception:
        if recorder is not None:
            report = recorder.record_exception(*sys.exc_info())
            log.exception("LlamaDesk failed to start or run (report: %s)", report)
        raise
    finally:
        if recorder is not None:
            recorder.end_run()


def _run(arguments: argparse.Namespace, argv: list[str], recorder: CrashRecorder | None) -> int:
    settings = settings_store.load()
    app = create_application([sys.argv[0], *argv], settings.theme)
    follow_system_theme(app)
    from desktop.main_window import MainWindow  # after QApplication exists

    window = MainWindow(settings)
    if arguments.self_test:
        from desktop.self_test import DEFAULT_TIMEOUT_S, start_self_test

        timeout = arguments.self_test_timeout or DEFAULT_TIMEOUT_S
        window.show()
        _self_test = start_self_test(window, arguments.self_test, arguments.self_test_result, timeout)
        return _exec_and_close(app, window)
    window.show()
    if arguments.model:
        window.open_model(arguments.model)
    else:
        window.open_initial_model()
    if recorder is not None:
        QTimer.singleShot(CRASH_OFFER_DELAY_MS, lambda: offer_unseen_reports(window.crash_notice, recorder))
    return _exec_and_close(app, window)


def _exec_and_close(app: QApplication, window) -> int:
    shutdown = ShutdownSignals(app)
    shutdown.requested.connect(lambda _name: (window.close(), app.quit()))
    code = app.exec()
    shutdown.restore()
    if window.isVisible():
        window.close()  # stops the engine process when the app was ended by QApplication.exit()
    log.info("LlamaDesk exiting with code %d", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
