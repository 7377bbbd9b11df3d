"""Cutting a document into chunks for retrieval: pieces of about CHUNK_CHARS characters that end at a paragraph,
a line or a sentence where they can, never span two pages (so each keeps its page number) and are numbered in
reading order."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from core.chat.attachments.extraction import Page

CHUNK_CHARS = 1200
_BREAKS = ("\n\n", "\n", ". ", "? ", "! ", "; ", " ")


@dataclass(frozen=True)
class Chunk:
    position: int             # 0-based, in reading order over the whole document
    page: int | None
    text: str


def chunk_pages(pages: Iterable[Page], size: int = CHUNK_CHARS) -> tuple[Chunk, ...]:
    chunks: list[Chunk] = []
    for page in pages:
        for piece in _pieces(page.text, size):
            chunks.append(Chunk(len(chunks), page.number, piece))
    return tuple(chunks)


def _pieces(text: str, size: int) -> list[str]:
    text = re.sub(r"[ \t]+\n", "\n", text).strip()
    pieces = []
    while len(text) > size:
        cut = _cut_at(text, size)
        pieces.append(text[:cut].strip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return [piece for piece in pieces if piece]


def _cut_at(text: str, size: int) -> int:
    """The end of the last paragraph, line, sentence or word that fits in `size` (past half of it), else `size`."""
    for mark in _BREAKS:
        found = text.rfind(mark, size // 2, size)
        if found > 0:
            return found + len(mark)
    return size
