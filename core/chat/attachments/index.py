"""Full-text search over documents' chunks with SQLite FTS5, ranked by BM25.

The chunks live in the table `attachment_chunks` of a database that also has a table `attachments(id ...)`: in the
chats database (core.chat.store, schema 4; their vectors, vectors.py, since schema 5), so a document's index is kept
with the chat, backed up and moved with it, and deleted with it by the foreign keys in the same transaction; or in
memory (ChunkIndex) for documents attached but not sent yet, and for llamadesk-cli. FTS5 indexes the chunks' text with
the Porter stemmer ("launched" finds "launch"); a SQLite without FTS5 falls back to counting the question's words in
each chunk.
"""
from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

from core.chat.attachments import vectors
from core.chat.attachments.chunks import Chunk
from core.chat.attachments.vectors import ChunkVectors, VectorSpace

# Frozen: migration 4 of the chats database runs CHUNK_TABLE; a change needs a new migration.
CHUNK_TABLE = (
    """CREATE TABLE attachment_chunks (
        seq INTEGER PRIMARY KEY,
        attachment_id TEXT NOT NULL REFERENCES attachments(id) ON DELETE CASCADE,
        position INTEGER NOT NULL, page INTEGER, text TEXT NOT NULL)""",
    "CREATE INDEX attachment_chunks_by_attachment ON attachment_chunks(attachment_id, position)",
)
FTS_TRIGGERS = ("attachment_chunks_fts_insert", "attachment_chunks_fts_delete")
FTS_INDEX = (
    "CREATE VIRTUAL TABLE attachment_chunks_fts USING fts5(text, content='attachment_chunks', content_rowid='seq', "
    "tokenize='porter unicode61')",
    """CREATE TRIGGER attachment_chunks_fts_insert AFTER INSERT ON attachment_chunks BEGIN
        INSERT INTO attachment_chunks_fts(rowid, text) VALUES (new.seq, new.text); END""",
    """CREATE TRIGGER attachment_chunks_fts_delete AFTER DELETE ON attachment_chunks BEGIN
        INSERT INTO attachment_chunks_fts(attachment_chunks_fts, rowid, text) VALUES ('delete', old.seq, old.text); END""",
    "INSERT INTO attachment_chunks_fts(rowid, text) SELECT seq, text FROM attachment_chunks",
)
# Words too common to tell chunks apart; BM25 weighs them low anyway, this keeps the query short.
_STOP_WORDS = frozenset("""a an and are as at be by did do does for from had has have how i in is it its me my of
on or so that the their them then there these they this to was we were what when where which who why will with
would you your""".split())
MAX_QUERY_WORDS = 32


@dataclass(frozen=True)
class FoundChunk:
    attachment_id: str
    position: int
    page: int | None
    text: str
    score: float              # higher is more relevant


def fts5_available(db: sqlite3.Connection) -> bool:
    try:
        db.execute("CREATE VIRTUAL TABLE temp.fts5_probe USING fts5(text)")
        db.execute("DROP TABLE temp.fts5_probe")
        return True
    except sqlite3.Error:
        return False


def ensure_fts(db: sqlite3.Connection) -> bool:
    """Install the FTS5 index over attachment_chunks where this SQLite has FTS5 (outside a transaction)."""
    if not fts5_available(db):
        for name in FTS_TRIGGERS:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        return False
    triggers = {row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'attachment_chunks_fts_%'")}
    if triggers != set(FTS_TRIGGERS):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in ["DROP TABLE IF EXISTS attachment_chunks_fts",
                              *[f"DROP TRIGGER IF EXISTS {name}" for name in FTS_TRIGGERS], *FTS_INDEX]:
                db.execute(statement)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return True


def insert_chunks(db: sqlite3.Connection, attachment_id: str, chunks: Iterable[Chunk]) -> None:
    db.executemany("INSERT INTO attachment_chunks (attachment_id, position, page, text) VALUES (?, ?, ?, ?)",
                   ((attachment_id, chunk.position, chunk.page, chunk.text) for chunk in chunks))


def query_words(question: str) -> list[str]:
    words = [word for word in re.findall(r"\w+", question.lower()) if word not in _STOP_WORDS]
    return list(dict.fromkeys(words))[:MAX_QUERY_WORDS]


def search(db: sqlite3.Connection, question: str, attachment_ids: Sequence[str], *, limit: int = 40,
           full_text: bool = True) -> list[FoundChunk]:
    """The chunks of these attachments that best match the question, best first (none when no word matches)."""
    words = query_words(question)
    if not words or not attachment_ids:
        return []
    marks = ",".join("?" * len(attachment_ids))
    if full_text:
        match = " OR ".join(f'"{word}"' for word in words)
        rows = db.execute(
            f"SELECT c.attachment_id, c.position, c.page, c.text, bm25(attachment_chunks_fts) AS rank "
            f"FROM attachment_chunks_fts JOIN attachment_chunks c ON c.seq = attachment_chunks_fts.rowid "
            f"WHERE attachment_chunks_fts MATCH ? AND c.attachment_id IN ({marks}) ORDER BY rank LIMIT ?",
            [match, *attachment_ids, limit]).fetchall()
        return [FoundChunk(row[0], row[1], row[2], row[3], -row[4]) for row in rows]
    return _search_by_counting(db, words, attachment_ids, marks, limit)


def _search_by_counting(db, words: list[str], attachment_ids, marks: str, limit: int) -> list[FoundChunk]:
    rows = db.execute(f"SELECT attachment_id, position, page, text FROM attachment_chunks "
                      f"WHERE attachment_id IN ({marks})", list(attachment_ids)).fetchall()
    scored = []
    for row in rows:
        text = row[3].lower()
        score = sum(text.count(word) for word in words)
        if score:
            scored.append(FoundChunk(row[0], row[1], row[2], row[3], float(score)))
    scored.sort(key=lambda found: -found.score)
    return scored[:limit]


def chunks_of(db: sqlite3.Connection, attachment_id: str, positions: Sequence[int] | None = None) -> list[Chunk]:
    """An attachment's chunks in reading order (only `positions` when given)."""
    rows = db.execute("SELECT position, page, text FROM attachment_chunks WHERE attachment_id = ? ORDER BY position",
                      (attachment_id,)).fetchall()
    wanted = None if positions is None else set(positions)
    return [Chunk(row[0], row[1], row[2]) for row in rows if wanted is None or row[0] in wanted]


def vectors_of(db: sqlite3.Connection, attachment_ids: Sequence[str],
               space: VectorSpace) -> list[tuple[FoundChunk, Sequence[float]]]:
    """These documents' chunks that have a vector of this space, each with it (meaning.nearest ranks them)."""
    if not attachment_ids:
        return []
    marks = ",".join("?" * len(attachment_ids))
    rows = db.execute(
        f"SELECT c.attachment_id, c.position, c.page, c.text, v.vector FROM attachment_vectors v "
        f"JOIN attachment_chunks c ON c.attachment_id = v.attachment_id AND c.position = v.position "
        f"WHERE v.model = ? AND v.dimension = ? AND v.attachment_id IN ({marks}) ORDER BY c.seq",
        [space.model, space.dimension, *attachment_ids]).fetchall()
    return [(FoundChunk(row[0], row[1], row[2], row[3], 0.0), vectors.unpack(row[4])) for row in rows]


class ChunkIndex:
    """An index of its own in memory: documents attached but not sent yet, and llamadesk-cli's documents.
    Any thread may call it; calls take turns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("CREATE TABLE attachments (id TEXT PRIMARY KEY)")
        for statement in (*CHUNK_TABLE, *vectors.VECTOR_TABLE):
            self.db.execute(statement)
        self.full_text = ensure_fts(self.db)

    def add(self, attachment_id: str, chunks: Sequence[Chunk]) -> None:
        with self._lock:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR IGNORE INTO attachments (id) VALUES (?)", (attachment_id,))
            insert_chunks(self.db, attachment_id, chunks)
            self.db.execute("COMMIT")

    def add_vectors(self, attachment_id: str, chunk_vectors: ChunkVectors) -> None:
        """The chunks' vectors from an embedding model (added after the chunks), for vectors_of()."""
        with self._lock:
            self.db.execute("BEGIN")
            vectors.insert_vectors(self.db, attachment_id, chunk_vectors)
            self.db.execute("COMMIT")

    def has_vectors(self, attachment_ids: Sequence[str], model: str) -> bool:
        with self._lock:
            return vectors.has_vectors(self.db, attachment_ids, model)

    def vectors_of(self, attachment_ids: Sequence[str],
                   space: VectorSpace) -> list[tuple[FoundChunk, Sequence[float]]]:
        with self._lock:
            return vectors_of(self.db, attachment_ids, space)

    def remove(self, attachment_id: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM attachments WHERE id = ?", (attachment_id,))

    def search(self, question: str, attachment_ids: Sequence[str], limit: int = 40) -> list[FoundChunk]:
        with self._lock:
            return search(self.db, question, attachment_ids, limit=limit, full_text=self.full_text)

    def close(self) -> None:
        with self._lock:
            self.db.close()
