#!/usr/bin/env python3
"""Render the application icon (resources/icons/llamadesk.svg) into the sizes each platform wants.

Outputs, beside the SVG:
  llamadesk-16.png ... llamadesk-512.png   Linux hicolor theme, the window icon
  llamadesk.ico                            Windows (PNG-compressed entries, 16..256)
  llamadesk.icns                           macOS (PNG entries, 16..1024 including @2x)

Qt draws the SVG (QSvgRenderer -> QImage); the ICO and ICNS containers are written here, so no other
image tool is needed. Outputs newer than the SVG are left alone unless --force is given.

Usage: python packaging/make_icons.py [--force] [--out FOLDER]
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ICON_DIR = ROOT / "resources" / "icons"
SOURCE = ICON_DIR / "llamadesk.svg"
NAME = "llamadesk"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS entry type -> pixel size (the @2x types are listed by their pixel size).
ICNS_TYPES = (
    (b"icp4", 16), (b"icp5", 32), (b"icp6", 64), (b"ic07", 128), (b"ic08", 256), (b"ic09", 512),
    (b"ic11", 32), (b"ic12", 64), (b"ic13", 256), (b"ic14", 512), (b"ic10", 1024),
)


class IconError(RuntimeError):
    """The icon source could not be read or rendered."""


def render_png(renderer: QSvgRenderer, size: int) -> bytes:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise IconError(f"Qt could not encode the {size}px icon as PNG.")
    return bytes(data.data())


def ico_container(pngs: dict[int, bytes]) -> bytes:
    """An ICO file whose entries are PNG images (understood by Windows Vista and later)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    directory, images = b"", b""
    for size in sizes:
        png = pngs[size]
        edge = 0 if size >= 256 else size  # 0 means 256 in an ICO directory
        directory += struct.pack("<BBBBHHII", edge, edge, 0, 0, 1, 32, len(png), offset + len(images))
        images += png
    return header + directory + images


def icns_container(pngs: dict[int, bytes]) -> bytes:
    """An ICNS file of PNG entries: 'icns', total length, then (type, length, data) per entry."""
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def outputs(folder: Path) -> list[Path]:
    return [folder / f"{NAME}-{size}.png" for size in PNG_SIZES] + [folder / f"{NAME}.ico", folder / f"{NAME}.icns"]


def up_to_date(folder: Path) -> bool:
    source_time = SOURCE.stat().st_mtime
    return all(path.exists() and path.stat().st_mtime >= source_time for path in outputs(folder))


def make_icons(folder: Path = ICON_DIR, force: bool = False) -> list[Path]:
    """Write every icon file into `folder`; returns their paths."""
    if not SOURCE.is_file():
        raise IconError(f"The icon source {SOURCE} is missing.")
    if not force and up_to_date(folder):
        return outputs(folder)
    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        raise IconError(f"Qt could not read {SOURCE} as SVG.")
    wanted = set(PNG_SIZES) | set(ICO_SIZES) | {size for _kind, size in ICNS_TYPES}
    pngs = {size: render_png(renderer, size) for size in sorted(wanted)}
    folder.mkdir(parents=True, exist_ok=True)
    for size in PNG_SIZES:
        (folder / f"{NAME}-{size}.png").write_bytes(pngs[size])
    (folder / f"{NAME}.ico").write_bytes(ico_container({s: pngs[s] for s in ICO_SIZES}))
    (folder / f"{NAME}.icns").write_bytes(icns_container(pngs))
    return outputs(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="render even when the outputs are newer")
    parser.add_argument("--out", type=Path, default=ICON_DIR, help="folder for the outputs")
    arguments = parser.parse_args(argv)
    try:
        written = make_icons(arguments.out, arguments.force)
    except IconError as error:
        print(f"make_icons: {error}", file=sys.stderr)
        return 1
    total = sum(path.stat().st_size for path in written)
    print(f"icons: {len(written)} files in {arguments.out} ({total / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
