"""Checking an attached image before anything decodes it, and how images ride on messages (no native code)."""
from __future__ import annotations

import struct
import time

import pytest

from core.engine.vision import (MAX_IMAGE_BYTES, MEDIA_MARKER, ImageRefused, image_header, images_in,
                                prepare_messages, read_image, refuse_images_without_projector, with_markers)
from tests.fixtures.tiny_vision import write_png


def test_a_png_is_read_with_its_size(tmp_path):
    image = read_image(write_png(tmp_path / "photo.png", 40, 24))
    assert (image.name, image.kind, image.width, image.height) == ("photo.png", "PNG", 40, 24)


def test_jpeg_gif_and_bmp_headers_give_their_sizes():
    jpeg = (b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
            + b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 480, 640) + b"\x00" * 10)
    assert image_header(jpeg) == ("JPEG", 640, 480)
    assert image_header(b"GIF89a" + struct.pack("<HH", 10, 20) + b"\x00" * 4) == ("GIF", 10, 20)
    assert image_header(b"BM" + b"\x00" * 16 + struct.pack("<ii", 30, -40)) == ("BMP", 30, 40)


def test_a_file_that_is_not_an_image_is_refused_by_name(tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("meeting notes")
    with pytest.raises(ImageRefused, match="notes.png is not an image this model can read: attach a PNG, JPEG"):
        read_image(notes)
    with pytest.raises(ImageRefused, match="does not exist"):
        read_image(tmp_path / "gone.jpg")


def test_a_200_mb_image_is_refused_before_it_is_read(tmp_path):
    huge = tmp_path / "scan.png"
    with open(huge, "wb") as file:
        file.write(write_png(tmp_path / "small.png").read_bytes())
        file.truncate(200 * 1024 * 1024)               # sparse: costs no disk, but reading it would take 200 MB
    started = time.process_time()
    with pytest.raises(ImageRefused, match=r"scan.png is 200 MB; images up to 32 MB can be attached"):
        read_image(huge)
    assert time.process_time() - started < 0.5         # not read (a generous bound: reading 200 MB takes longer)
    with pytest.raises(ImageRefused, match="MB can be attached"):
        read_image(b"\x00" * (MAX_IMAGE_BYTES + 1), name="pasted image")


def test_an_image_whose_header_claims_too_many_pixels_is_refused(tmp_path):
    bomb = bytearray(write_png(tmp_path / "bomb.png").read_bytes())
    bomb[16:24] = struct.pack(">II", 50_000, 50_000)
    with pytest.raises(ImageRefused, match="50000 x 50000 pixels"):
        read_image(bytes(bomb), name="bomb.png")


def test_markers_go_before_the_text_and_the_images_key_is_gone(tmp_path):
    photo = write_png(tmp_path / "a.png")
    message = {"role": "user", "content": "Compare", "images": [str(photo), photo.read_bytes()]}
    assert with_markers(message) == {"role": "user", "content": f"{MEDIA_MARKER}\n{MEDIA_MARKER}\nCompare"}
    shown, images = prepare_messages([{"role": "system", "content": "Be brief."}, message])
    assert "images" not in shown[1]
    assert [image.name for image in images_in(shown, images)] == ["a.png", "image 2 of message 2"]
    assert images_in(shown[:1], images) == []          # a message left out of the context takes its images along


def test_a_model_without_a_projector_says_so_in_a_sentence(tmp_path):
    refuse_images_without_projector([{"role": "user", "content": "hi"}], "SmolLM2.gguf")   # no image: fine
    with pytest.raises(ImageRefused, match="SmolLM2.gguf cannot look at images: it was loaded without a vision"):
        refuse_images_without_projector([{"role": "user", "content": "hi", "images": ["x.png"]}], "SmolLM2.gguf")
