"""`llamadesk`: start the desktop app."""
from __future__ import annotations

import argparse
import logging
import sys

from PySide6.QtWidgets import QApplication

from core import locations
from core import settings as settings_store

log = logging.getLogger(__name__)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llamadesk", description="Chat with local language models.")
    parser.add_argument("model", nargs="?", help="a .gguf model to open at start")
    return parser.parse_args(argv)


def create_application(argv: list[str]) -> QApplication:
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName(locations.APP_NAME)
    app.setOrganizationName(locations.APP_NAME)
    app.setApplicationDisplayName(locations.APP_NAME)
    app.setDesktopFileName("llamadesk")
    style = locations.resources_dir() / "styles" / "app.qss"
    if style.is_file():
        app.setStyleSheet(style.read_text(encoding="utf-8"))
    return app


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_application([sys.argv[0], *argv])
    from desktop.main_window import MainWindow  # after QApplication exists

    window = MainWindow(settings_store.load())
    window.show()
    if arguments.model:
        window.open_model(arguments.model)
    else:
        window.open_initial_model()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
