"""Export a conversation as Markdown or JSON and import a JSON chat file: the file dialogs, with the
formatting and the disk work (core.chat.export) off the UI thread."""
from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from core.chat.export import read_json_file, to_json, to_markdown
from core.chat.conversation import Conversation
from desktop.tasks import Task

FORMATS = {"markdown": ("Markdown (*.md)", ".md", to_markdown), "json": ("LlamaDesk chat (*.json)", ".json", to_json)}


def suggested_name(conversation: Conversation, extension: str) -> str:
    stem = re.sub(r"[^\w\- ]+", "", conversation.title).strip()[:60] or "chat"
    return stem + extension


def ask_export_path(parent: QWidget, conversation: Conversation, kind: str, folder: Path) -> Path | None:
    file_filter, extension, _ = FORMATS[kind]
    path, _ = QFileDialog.getSaveFileName(parent, "Export chat", str(folder / suggested_name(conversation, extension)),
                                          file_filter)
    if not path:
        return None
    path = Path(path)
    return path if path.suffix else path.with_suffix(extension)


def ask_import_path(parent: QWidget, folder: Path) -> Path | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Import chat", str(folder), "LlamaDesk chat (*.json)")
    return Path(path) if path else None


def export_in_background(conversation: Conversation, kind: str, path: Path, done, failed) -> None:
    (Task(_write, FORMATS[kind][2], conversation, path)
     .success(lambda _: done(path)).failure(failed).run_in_background())


def import_in_background(path: Path, done, failed) -> None:
    Task(read_json_file, path).success(done).failure(failed).run_in_background()


def _write(render, conversation: Conversation, path: Path) -> None:
    path.write_text(render(conversation), encoding="utf-8")
