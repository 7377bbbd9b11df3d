"""Small pictures of the images attached to a question, for the chat document.

A thumbnail is decoded off the UI thread (a large photo takes far longer than a frame to decode), on a lane of its
own so that two huge pictures are never held in memory at once; QImageReader scales while it decodes where the
format allows it (a JPEG decodes at a fraction of its size). Until it arrives, `thumbnail` gives a neutral
placeholder of the size the picture will have (read from the file's header: a few bytes), so nothing moves when
the chat view swaps it in on `ready`. Each file is decoded once and kept (the chat is drawn again on every look
change and every new message); a file that cannot be decoded keeps its placeholder."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QImageIOHandler, QImageReader

from desktop.tasks import Task

THUMBNAIL_SIZE = QSize(240, 180)
THUMBNAIL_LANE = "thumbnails"
KEPT_THUMBNAILS = 200              # about 170 KB each at full size
# Qt's default (256 MB) refuses a picture over ~64 megapixels even when asked for a small size: a PNG is decoded
# whole before it is scaled. Thumbnails are decoded one at a time on their lane, so this bounds what they hold.
DECODE_LIMIT_MB = 768
PLACEHOLDER_COLOUR = QColor(128, 128, 128, 60)   # translucent: a quiet grey on the light and the dark bubbles

_Key = tuple[str, float]


class ThumbnailCache(QObject):
    ready = Signal(str)            # the path whose thumbnail was decoded and can replace its placeholder

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._decoded: OrderedDict[_Key, QImage] = OrderedDict()
        self._decoding: set[_Key] = set()

    def thumbnail(self, path: str | Path) -> QImage | None:
        """The decoded thumbnail, else a placeholder of its size while it is decoded; None when the file is gone
        or is not a picture."""
        key = _key(path)
        if key is None:
            return None
        decoded = self.decoded(path, key)
        if decoded is not None:
            return decoded
        size = shown_size(QImageReader(str(path)), THUMBNAIL_SIZE)
        if size is None:
            return None
        self._start_decoding(key, size)
        return placeholder(size)

    def decoded(self, path: str | Path, key: _Key | None = None) -> QImage | None:
        """The thumbnail if it has been decoded (the placeholder, for a picture that could not be)."""
        key = key or _key(path)
        image = self._decoded.get(key) if key else None
        if image is not None:
            self._decoded.move_to_end(key)
        return image

    def _start_decoding(self, key: _Key, size: QSize) -> None:
        if key in self._decoding:
            return
        self._decoding.add(key)
        (Task(read_scaled, key[0], THUMBNAIL_SIZE)
         .success(lambda image: self._keep(key, image, size))
         .failure(lambda _error: self._keep(key, None, size))
         .run_in_background(serial=THUMBNAIL_LANE))

    def _keep(self, key: _Key, image: QImage | None, size: QSize) -> None:
        self._decoding.discard(key)
        self._decoded[key] = placeholder(size) if image is None else image
        while len(self._decoded) > KEPT_THUMBNAILS:
            self._decoded.popitem(last=False)
        if image is not None:
            self.ready.emit(key[0])


_shared: ThumbnailCache | None = None


def shared_thumbnails() -> ThumbnailCache:
    """The application's one cache: every chat view shows the same files."""
    global _shared
    if _shared is None:
        _shared = ThumbnailCache()
    return _shared


def thumbnail(path: str | Path) -> QImage | None:
    return shared_thumbnails().thumbnail(path)


def placeholder(size: QSize) -> QImage:
    image = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(PLACEHOLDER_COLOUR)
    return image


def shown_size(reader: QImageReader, bound: QSize) -> QSize | None:
    """The size the picture is shown at: upright, fitted into `bound`, never enlarged. Read from the header only;
    `bound` itself when the format does not say; None when the file is not a picture."""
    reader.setAutoTransform(True)
    if not reader.canRead():
        return None
    size = reader.size()
    if not size.isValid():
        return QSize(bound)
    if _turned(reader):
        size = size.transposed()
    if size.width() > bound.width() or size.height() > bound.height():
        size = size.scaled(bound, Qt.AspectRatioMode.KeepAspectRatio)
    return size


def read_scaled(path: str | Path, bound: QSize) -> QImage | None:
    """The image decoded at the largest size that fits `bound` (QImage is safe to make off the UI thread)."""
    reader = QImageReader(str(path))
    reader.setAllocationLimit(DECODE_LIMIT_MB)
    size = shown_size(reader, bound)
    if size is None:
        return None
    if reader.size().isValid():
        reader.setScaledSize(size.transposed() if _turned(reader) else size)   # scaled before it is turned
    image = reader.read()
    if image.isNull():
        return None
    if image.width() > bound.width() or image.height() > bound.height():   # a format that did not give its size
        image = image.scaled(bound, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    return image


def _turned(reader: QImageReader) -> bool:
    return bool(reader.transformation() & QImageIOHandler.Transformation.TransformationRotate90)


def _key(path: str | Path) -> _Key | None:
    try:
        return str(path), Path(path).stat().st_mtime
    except OSError:
        return None
