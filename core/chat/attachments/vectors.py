"""Chunks' vectors from an embedding model, as values and as kept in SQLite.

A vector only means something next to vectors from the same model, so each set is tagged with its VectorSpace: the
embedding model's file name and the vectors' length. A question is compared only with chunks of its own space; a chat
read with another model, or with none, is searched by its words alone. In the database (the chats file, schema 5, and
the in-memory index) each vector is one row of `attachment_vectors`, `dimension` float32 values in a BLOB (little
endian): 4 bytes a value, a quarter of the text of the same numbers, and read back without parsing.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

from core.chat.attachments.chunks import Chunk

# Frozen: migration 5 of the chats database runs VECTOR_TABLE; a change needs a new migration.
VECTOR_TABLE = (
    """CREATE TABLE attachment_vectors (
        attachment_id TEXT NOT NULL REFERENCES attachments(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,              -- the chunk's, as in attachment_chunks
        model TEXT NOT NULL,                    -- the embedding model's file name
        dimension INTEGER NOT NULL,
        vector BLOB NOT NULL,                   -- `dimension` float32 values, little endian
        PRIMARY KEY (attachment_id, model, dimension, position))""",
)
_FLOAT32 = "<f4"

if TYPE_CHECKING:
    import numpy


class Embed(Protocol):
    """An embedding model as a callable from texts to unit vectors (core.engine.embedder.Embedder); its file,
    `model_path`, names the space its vectors live in."""

    model_path: Path

    def __call__(self, texts: Sequence[str]) -> list[tuple[float, ...]]: ...


@dataclass(frozen=True)
class VectorSpace:
    """Which vectors can be compared: those of one embedding model (by file name) and one length."""

    model: str
    dimension: int


@dataclass(frozen=True)
class ChunkVectors:
    """A document's chunks' vectors from one embedding model, by chunk position (a chunk the model could not read
    has none)."""

    space: VectorSpace
    by_position: Mapping[int, Sequence[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddedChunks:
    """A document's chunks with their vectors, as ChatStore.add_message keeps them."""

    chunks: tuple[Chunk, ...]
    vectors: ChunkVectors | None = None


def model_name(embed: Embed) -> str:
    return Path(embed.model_path).name


def pack(vector: Sequence[float]) -> bytes:
    import numpy       # deferred, as in meaning.py: opening the chats database stays light

    return numpy.asarray(vector, dtype=_FLOAT32).tobytes()


def unpack(blob: bytes) -> "numpy.ndarray":
    import numpy

    return numpy.frombuffer(blob, dtype=_FLOAT32)


def insert_vectors(db: sqlite3.Connection, attachment_id: str, vectors: ChunkVectors) -> None:
    space = vectors.space
    db.executemany(
        "INSERT OR REPLACE INTO attachment_vectors (attachment_id, position, model, dimension, vector) "
        "VALUES (?, ?, ?, ?, ?)",
        ((attachment_id, position, space.model, space.dimension, pack(vector))
         for position, vector in vectors.by_position.items() if len(vector) == space.dimension))


def has_vectors(db: sqlite3.Connection, attachment_ids: Sequence[str], model: str) -> bool:
    """Whether any of these documents' chunks have vectors from this model (of any length)."""
    if not attachment_ids:
        return False
    marks = ",".join("?" * len(attachment_ids))
    return db.execute(f"SELECT 1 FROM attachment_vectors WHERE model = ? AND attachment_id IN ({marks}) LIMIT 1",
                      [model, *attachment_ids]).fetchone() is not None
