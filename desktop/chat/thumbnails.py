"""Small pictures of the images attached to a question, for the chat document.

A thumbnail is decoded at its small size (QImageReader scales while it decodes: a JPEG decodes at a fraction of its
size), once per file, and kept: the chat is drawn again on every look change and every new message."""
from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QImageReader

THUMBNAIL_SIZE = QSize(240, 180)

_cache: dict[tuple[str, float], QImage] = {}
_lock = threading.Lock()


def thumbnail(path: str | Path) -> QImage | None:
    """The image at `path` scaled to fit THUMBNAIL_SIZE (never enlarged); None when it cannot be read."""
    try:
        key = (str(path), Path(path).stat().st_mtime)
    except OSError:
        return None
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    image = read_scaled(path, THUMBNAIL_SIZE)
    if image is not None:
        with _lock:
            _cache[key] = image
    return image


def read_scaled(path: str | Path, bound: QSize) -> QImage | None:
    """The image decoded at the largest size that fits `bound` (QImage is safe to make off the UI thread)."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and (size.width() > bound.width() or size.height() > bound.height()):
        reader.setScaledSize(size.scaled(bound, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return None if image.isNull() else image

