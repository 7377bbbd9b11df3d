"""An attached image's thumbnail in the chat: decoded off the UI thread, a placeholder of its size shown until then,
swapped in when it arrives, kept so that drawing the chat again decodes nothing; a picture too large for Qt's
default limit gets its thumbnail too."""
from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import pytest
from PySide6.QtCore import QSize, QUrl
from PySide6.QtGui import QColor, QImage, QPainter, QTextDocument

from core.chat.attachments.attachment import Attachment
from desktop.chat import thumbnails
from desktop.chat.chat_view import ChatView, thumbnail_resource
from desktop.chat.message_views import MessageView

SKY = QColor(40, 110, 210)
TIMEOUT_MS = 20_000


def write_sky(path: Path, width: int = 400, height: int = 240) -> Path:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(SKY)
    painter = QPainter(image)
    painter.fillRect(0, height * 3 // 4, width, height // 4, QColor(60, 150, 70))   # grass along the bottom
    painter.end()
    assert image.save(str(path))
    return path


def write_huge_png(path: Path, width: int, height: int) -> Path:
    """A sky-blue PNG of width × height pixels; one colour, so the file stays small while its pixels do not."""
    row = b"\x00" + bytes((SKY.red(), SKY.green(), SKY.blue())) * width
    packer = zlib.compressobj(1)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def question_with(picture: Path, message_id: str = "q1") -> MessageView:
    image = Attachment(picture.name, "image", 16, picture.stat().st_size, "image", path=str(picture))
    return MessageView(message_id, "user", "What is in this picture?", attachments=(image,))


def shown_thumbnail(view: ChatView, picture: Path) -> QImage:
    url = QUrl(thumbnail_resource(str(picture)))
    return view.document().resource(QTextDocument.ResourceType.ImageResource, url)


def is_sky(image: QImage) -> bool:
    return isinstance(image, QImage) and image.pixelColor(5, 5).rgb() == SKY.rgb()


@pytest.fixture
def chat_view(qtbot):
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(700, 500)
    view.show()
    return view


@pytest.fixture
def held_decodes(monkeypatch):
    """The thumbnail decoder, recording the thread of each decode and waiting until the test lets it go on."""
    decoding = threading.Event()
    go_on = threading.Event()
    threads: list[threading.Thread] = []
    decode = thumbnails.read_scaled

    def held(path, bound):
        threads.append(threading.current_thread())
        decoding.set()
        go_on.wait(TIMEOUT_MS / 1000)
        return decode(path, bound)

    monkeypatch.setattr(thumbnails, "read_scaled", held)
    yield decoding, go_on, threads
    go_on.set()


def test_a_thumbnail_is_decoded_off_the_ui_thread_behind_a_placeholder_of_its_size(qtbot, chat_view, held_decodes,
                                                                                    tmp_path):
    decoding, go_on, threads = held_decodes
    picture = write_sky(tmp_path / "meadow.png")
    chat_view.show_thread([question_with(picture)])

    assert decoding.wait(TIMEOUT_MS / 1000), "the decode started in the background"
    assert threads[0] is not threading.main_thread()
    shown = shown_thumbnail(chat_view, picture)
    assert shown.size() == QSize(240, 144), "the placeholder has the thumbnail's size: nothing moves later"
    assert not is_sky(shown)

    go_on.set()
    qtbot.waitUntil(lambda: is_sky(shown_thumbnail(chat_view, picture)), timeout=TIMEOUT_MS)
    assert shown_thumbnail(chat_view, picture).size() == QSize(240, 144)
    assert "Attached image: meadow.png · 16 tokens" in chat_view.toPlainText()


def test_a_thumbnail_is_decoded_once_and_kept(qtbot, chat_view, held_decodes, tmp_path):
    decoding, go_on, threads = held_decodes
    go_on.set()
    picture = write_sky(tmp_path / "meadow.png")
    chat_view.show_thread([question_with(picture)])
    qtbot.waitUntil(lambda: is_sky(shown_thumbnail(chat_view, picture)), timeout=TIMEOUT_MS)

    chat_view.show_thread([question_with(picture, "q2")])          # another chat showing the same file
    chat_view.apply_look("dark" if chat_view.look == "light" else "light")
    assert is_sky(shown_thumbnail(chat_view, picture)), "drawn again straight from the kept thumbnail"
    assert len(threads) == 1


def test_a_huge_picture_gets_its_thumbnail_without_holding_the_ui(qtbot, chat_view, tmp_path):
    picture = write_huge_png(tmp_path / "panorama.png", 9600, 7200)   # 276 MB of pixels: over Qt's default limit
    chat_view.show_thread([question_with(picture)])
    # The answer comes through the UI thread's event loop, which has not run since: showing did not wait for it.
    assert not is_sky(shown_thumbnail(chat_view, picture))
    qtbot.waitUntil(lambda: is_sky(shown_thumbnail(chat_view, picture)), timeout=TIMEOUT_MS)
    assert shown_thumbnail(chat_view, picture).size() == QSize(240, 180)


def test_a_file_that_is_not_a_picture_shows_no_thumbnail(chat_view, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture")
    chat_view.show_thread([question_with(fake)])
    assert "Attached image: notes.png" in chat_view.toPlainText()
    assert not isinstance(shown_thumbnail(chat_view, fake), QImage)
