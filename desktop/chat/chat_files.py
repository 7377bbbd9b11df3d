"""Export a conversation as Markdown or JSON and import a JSON chat file: the file dialogs, with the
formatting and the disk work (core.chat.export) off the UI thread."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from core.chat.conversation import Conversation
from core.chat.export import EXPORTS, export_file_name, read_json_file, write_export
from desktop.tasks import Task

FILE_FILTERS = {"markdown": "Markdown (*.md)", "json": "LlamaDesk chat (*.json)"}


def ask_export_path(parent: QWidget, conversation: Conversation, kind: str, folder: Path) -> Path | None:
    extension = EXPORTS[kind][0]
    path, _ = QFileDialog.getSaveFileName(parent, "Export chat", str(folder / export_file_name(conversation, kind)),
                                          FILE_FILTERS[kind])
    if not path:
        return None
    path = Path(path)
    return path if path.suffix else path.with_suffix(extension)


def ask_import_path(parent: QWidget, folder: Path) -> Path | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Import chat", str(folder), "LlamaDesk chat (*.json)")
    return Path(path) if path else None


def export_in_background(conversation: Conversation, kind: str, path: Path, done, failed) -> None:
    (Task(write_export, conversation, kind, path)
     .success(lambda _: done(path)).failure(failed).run_in_background())


def import_in_background(path: Path, done, failed) -> None:
    Task(read_json_file, path).success(done).failure(failed).run_in_background()
