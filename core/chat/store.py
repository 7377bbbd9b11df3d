"""The chat store: conversations and their message trees in SQLite, written as answers stream.

File: locations.data_dir()/chats.sqlite3, WAL journal, foreign keys on, `synchronous=NORMAL` (a committed
write survives the app being killed; only an OS crash may lose the last instant). The schema version is
`PRAGMA user_version`; opening a file runs the ordered migrations that bring it to SCHEMA_VERSION, each in
its own transaction. A file that is not a database or fails SQLite's quick check is moved aside
(chats.damaged-<time>.sqlite3) and a new one started; `recovered` says so in a sentence for the user.

Threads: one SQLite connection per thread (created on first use, closed when that thread has ended or
the store closes). The GUI calls the store from its background workers, so any thread may call any
method. Every write is one short `BEGIN IMMEDIATE` transaction; WAL lets readers run beside the single
writer, and a busy database is waited on for `busy_timeout` seconds before DatabaseLocked is raised.
This was chosen over a single writer thread because callers then get results and errors directly, and
the writes are small enough that serialising them in SQLite costs nothing measurable.

Streaming answers: `begin_answer` inserts an empty, unfinished assistant message; `append_answer` (the
answer's text) and `append_reasoning` (its thinking, a column of its own) only buffer text in memory and writes it when 64 characters have gathered or 250 ms have passed (a small
background flusher makes sure a stalled stream is written too); `finish_answer` writes the rest with the
stats and the tool calls the model made. An append that writes takes about 0.1 ms, but waits up to `busy_timeout` if another program holds
the database, so call the store from a worker, not the UI thread. Answers found unfinished when a file
is opened (the app was killed) are marked stopped early, with the text that had been written kept.
Use one ChatStore per file per process.

Attachments (schema 4): a user's message may carry files. Each is copied into the folder `attachments/` beside
the database (one folder per conversation, the file named by the attachment's id) and described by a row of
`attachments`; a document's chunks go into `attachment_chunks` with an FTS5 index (core.chat.attachments.index),
in this database rather than a file of their own so that a chat's documents are deleted with it by the foreign keys
in one transaction and move with the chats file. The parts a question sent to the model are the message's
`sources` (JSON). Deleting a conversation deletes its folder of copies once the rows are gone.

Chunk vectors (schema 5): when an embedding model read a document, its chunks' vectors are stored with the chunks in
the same transaction (`attachment_vectors`, float32 BLOBs tagged with the model's file name and the vectors' length:
core.chat.attachments.vectors), so a follow-up question searches the stored chunks by meaning too (StoredChunks).
Chats from earlier versions have no vectors and are searched by their words until a follow-up question gives them
some (`add_attachment_vectors`, run by the GUI in the background once an embedding model is in the library).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from core.platform import locations
from core.chat.attachments.attachment import Attachment, Source
from core.chat.attachments.chunks import Chunk
from core.chat.attachments import index as chunk_index
from core.chat.attachments import vectors as vector_table
from core.chat.attachments.index import FoundChunk
from core.chat.attachments.vectors import ChunkVectors, EmbeddedChunks, VectorSpace
from core.chat.conversation import (ChatError, Conversation, Message, MessageStats, PRESETS, SamplingValues,
                                    ThinkingSetting, ToolCall, suggest_title)

log = logging.getLogger(__name__)

DB_FILE_NAME = "chats.sqlite3"
SCHEMA_VERSION = 5
ATTACHMENTS_FOLDER = "attachments"
FLUSH_INTERVAL_S = 0.25
FLUSH_CHARS = 64
BUSY_TIMEOUT_S = 5.0

# --------------------------------------------------------------------------------------------
# errors


class StoreError(Exception):
    """A chat-store failure; str() is a sentence a user can read. The app keeps running."""


class DatabaseLocked(StoreError):
    """Another connection held the database for longer than the busy timeout."""


class DiskFull(StoreError):
    """The disk (or the database's size limit) is full."""


class DatabaseCorrupt(StoreError):
    """The database file is damaged."""


class NewerDatabase(StoreError):
    """The file was written by a newer LlamaDesk; it is left untouched."""


class ConversationNotFound(StoreError):
    """The conversation (or message) does not exist, e.g. it was deleted."""


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26


def _primary_code(error: sqlite3.Error) -> int:
    return (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF


def _is_damage(error: sqlite3.Error) -> bool:
    return _primary_code(error) in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in str(error)


def _translate(error: sqlite3.Error, action: str, path: Path) -> StoreError:
    code = _primary_code(error)
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in str(error):
        return DatabaseLocked(f"Could not {action}: the chat database is busy (another program or LlamaDesk "
                              f"window is using {path.name}). Try again in a moment.")
    if code == _SQLITE_FULL:
        return DiskFull(f"Could not {action}: the disk holding {path.parent} is full. Free some space and "
                        "try again; what was saved before is kept.")
    if _is_damage(error):
        return DatabaseCorrupt(f"Could not {action}: the chat database {path} is damaged ({error}). "
                               "Restart LlamaDesk to set it aside and start a new one.")
    return StoreError(f"Could not {action}: the chat database {path} reported an error ({error}).")


# --------------------------------------------------------------------------------------------
# values returned


@dataclass(frozen=True)
class ConversationSummary:
    """One row of the conversation list."""

    id: str
    title: str
    created_at: float
    updated_at: float
    message_count: int
    preset: str


@dataclass(frozen=True)
class Recovery:
    """A damaged database was set aside and a new one started."""

    moved_to: Path
    reason: str

    @property
    def sentence(self) -> str:
        return (f"The chat history file was damaged and could not be read ({self.reason}). It was kept as "
                f"{self.moved_to} and a new, empty history was started.")


# --------------------------------------------------------------------------------------------
# schema: version 1 (the first release: one flat list of messages per conversation), version 2
# (message trees, settings, streaming state), version 3 (an answer's thinking and tool calls, the
# conversation's thinking choice), version 4 (attachments and their chunks) and version 5 (the chunks'
# vectors). Every step runs in order from the file's version.

_V1 = (
    """CREATE TABLE conversations (
        id TEXT PRIMARY KEY, title TEXT NOT NULL DEFAULT '', system_prompt TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
    """CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, created_at REAL NOT NULL)""",
    "CREATE INDEX messages_by_conversation ON messages(conversation_id, position)",
)

_V1_TO_V2 = (
    "ALTER TABLE conversations ADD COLUMN preset TEXT NOT NULL DEFAULT 'Balanced'",
    "ALTER TABLE conversations ADD COLUMN sampling TEXT",          # JSON; NULL: the preset's values
    "ALTER TABLE conversations ADD COLUMN current_leaf_id TEXT",
    "ALTER TABLE messages RENAME TO messages_v1",
    "DROP INDEX messages_by_conversation",
    """CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        parent_id TEXT REFERENCES messages(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL DEFAULT '',
        stopped_early INTEGER NOT NULL DEFAULT 0,
        complete INTEGER NOT NULL DEFAULT 1,
        stats TEXT,
        created_at REAL NOT NULL)""",
    "DELETE FROM messages_v1 WHERE conversation_id NOT IN (SELECT id FROM conversations)",  # orphans
    # the flat list becomes a chain: each message's parent is the one before it
    """INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at)
        SELECT id, conversation_id,
               LAG(id) OVER (PARTITION BY conversation_id ORDER BY position, rowid),
               role, content, created_at
        FROM messages_v1 ORDER BY conversation_id, position, rowid""",
    "DROP TABLE messages_v1",
    "CREATE INDEX messages_by_conversation ON messages(conversation_id, seq)",
    "CREATE INDEX messages_by_parent ON messages(parent_id)",
    "CREATE INDEX conversations_by_update ON conversations(updated_at)",
    """UPDATE conversations SET current_leaf_id =
        (SELECT id FROM messages m WHERE m.conversation_id = conversations.id ORDER BY seq DESC LIMIT 1)""",
)

_V2_TO_V3 = (
    "ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE messages ADD COLUMN tool_calls TEXT",             # JSON list of {id, name, arguments}; NULL: none
    "ALTER TABLE conversations ADD COLUMN thinking TEXT",          # JSON {enabled, effort}; NULL: the model's default
)

_V3_TO_V4 = (
    "ALTER TABLE messages ADD COLUMN sources TEXT",                # JSON list of core.chat.attachments Source; NULL: none
    """CREATE TABLE attachments (
        id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('document', 'image')),
        file TEXT NOT NULL DEFAULT '',       -- the copy, relative to the attachments folder; '' when not kept
        tokens INTEGER NOT NULL DEFAULT 0,
        size_bytes INTEGER NOT NULL DEFAULT 0,
        used TEXT NOT NULL DEFAULT 'whole',
        created_at REAL NOT NULL)""",
    "CREATE INDEX attachments_by_message ON attachments(message_id, position)",
    *chunk_index.CHUNK_TABLE,
)

_V4_TO_V5 = vector_table.VECTOR_TABLE

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = ((1, _V1), (2, _V1_TO_V2), (3, _V2_TO_V3), (4, _V3_TO_V4),
                                                       (5, _V4_TO_V5))

# Full-text search over finished messages (FTS5 where this SQLite has it; LIKE otherwise).
_SEARCH_INDEX = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='seq')",
    """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.complete = 1 BEGIN
        INSERT INTO messages_fts(rowid, content) VALUES (new.seq, new.content); END""",
    """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.complete = 1 BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.seq, old.content); END""",
    """CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, complete ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, content)
            SELECT 'delete', old.seq, old.content WHERE old.complete = 1;
        INSERT INTO messages_fts(rowid, content) SELECT new.seq, new.content WHERE new.complete = 1; END""",
    "INSERT INTO messages_fts(rowid, content) SELECT seq, content FROM messages WHERE complete = 1",
)
_SEARCH_TRIGGERS = ("messages_fts_insert", "messages_fts_delete", "messages_fts_update")

_fts5: bool | None = None


def fts5_available() -> bool:
    """Whether this Python's SQLite has the FTS5 full-text search module."""
    global _fts5
    if _fts5 is None:
        probe = sqlite3.connect(":memory:")
        try:
            probe.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
            _fts5 = True
        except sqlite3.Error:
            _fts5 = False
        finally:
            probe.close()
    return _fts5


def default_path() -> Path:
    return locations.data_dir() / DB_FILE_NAME


# --------------------------------------------------------------------------------------------
# streaming buffers


@dataclass
class _PendingAnswer:
    """Answer text and thinking received but not yet written."""

    parts: list[str] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    size: int = 0
    last_flush: float = field(default_factory=time.monotonic)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    def add_reasoning(self, text: str) -> None:
        self.reasoning_parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts)

    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    def due(self, now: float) -> bool:
        return self.size >= FLUSH_CHARS or (self.size > 0 and now - self.last_flush >= FLUSH_INTERVAL_S)

    def written(self, now: float) -> None:
        self.parts.clear()
        self.reasoning_parts.clear()
        self.size = 0
        self.last_flush = now


_AFTER_SELECTED = object()  # add_message(): "the parent is the conversation's selected leaf"


# --------------------------------------------------------------------------------------------
# the store


class ChatStore:
    """Conversations on disk. Safe to call from any thread; see the module docstring."""

    def __init__(self, path: Path | None = None, *, busy_timeout: float = BUSY_TIMEOUT_S,
                 full_text_search: bool = True) -> None:
        self.path = Path(path) if path else default_path()
        self.recovered: Recovery | None = None
        self.interrupted_answers = 0
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[tuple[weakref.ref, sqlite3.Connection]] = []
        self._registry_lock = threading.Lock()
        self._pending: dict[str, _PendingAnswer] = {}
        self._pending_lock = threading.RLock()
        self._flusher: threading.Thread | None = None
        self._closing = threading.Event()
        self._closed = False
        self._fts = False
        self._chunk_fts = False
        try:
            self._open(full_text_search)
        except BaseException:
            self._close_connections()
            raise

    @property
    def uses_full_text_search(self) -> bool:
        return self._fts

    # --- opening ---

    def _open(self, full_text_search: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"Could not create the folder for chats, {self.path.parent}: "
                             f"{error.strerror or error}.") from error
        try:
            try:
                self._prepare(full_text_search)
            except _Damaged as damage:
                self._start_over(damage.reason, full_text_search)
            except sqlite3.Error as error:
                if not _is_damage(error):
                    raise
                self._start_over(str(error), full_text_search)
        except sqlite3.Error as error:
            raise _translate(error, "open the chat history", self.path) from error

    def _start_over(self, reason: str, full_text_search: bool) -> None:
        self._set_aside(reason)
        try:
            self._prepare(full_text_search)
        except _Damaged as damage:
            raise DatabaseCorrupt(f"A new chat history could not be started at {self.path} "
                                  f"({damage.reason}).") from None

    def _prepare(self, full_text_search: bool) -> None:
        db = self._connection()
        db.execute("PRAGMA journal_mode = WAL")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _Damaged(problems[0])
        _migrate(db, self.path)
        self._fts = full_text_search and _ensure_search_index(db)
        self._chunk_fts = chunk_index.ensure_fts(db)
        self.interrupted_answers = _close_interrupted_answers(db)

    def _set_aside(self, reason: str) -> None:
        self._close_connections()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.stem}.damaged-{stamp}{self.path.suffix}")
        copies = 1
        while target.exists():
            copies += 1
            target = self.path.with_name(f"{self.path.stem}.damaged-{stamp}-{copies}{self.path.suffix}")
        try:
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.replace(Path(f"{target}{suffix}"))
        except OSError as error:
            raise DatabaseCorrupt(f"The chat history file {self.path} is damaged and could not be moved "
                                  f"aside ({error.strerror or error}). Move it away by hand and restart "
                                  "LlamaDesk.") from error
        self.recovered = Recovery(target, reason)
        log.warning("chat database %s was damaged (%s); moved to %s, starting a new one",
                    self.path, reason, target)

    # --- conversations ---

    def create_conversation(self, title: str = "", system_prompt: str = "", preset: str = "Balanced",
                            sampling: SamplingValues | None = None,
                            thinking: ThinkingSetting = ThinkingSetting()) -> Conversation:
        conversation = Conversation(system_prompt=system_prompt, title=title, preset=preset,
                                    sampling=sampling or PRESETS.get(preset, SamplingValues()), thinking=thinking)
        self.save_conversation(conversation)
        return conversation

    def save_conversation(self, conversation: Conversation) -> None:
        """Insert a whole conversation with every branch (a new or an imported one) in one transaction."""
        with self._writing("save the conversation") as db:
            try:
                db.execute(
                    "INSERT INTO conversations (id, title, system_prompt, created_at, updated_at, preset, "
                    "sampling, current_leaf_id, thinking) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (conversation.id, conversation.title, conversation.system_prompt,
                     conversation.created_at, conversation.updated_at, conversation.preset,
                     json.dumps(conversation.sampling.as_dict()), conversation.current_leaf_id,
                     _thinking_to_json(conversation.thinking)))
            except sqlite3.IntegrityError as error:
                raise StoreError("Could not save the conversation: one with the same id is already in "
                                 "the history.") from error
            for message in conversation.all_messages():
                _insert_message(db, conversation.id, message, complete=True, folder=self.attachments_folder)

    def list_conversations(self, search: str = "", *, limit: int | None = None,
                           offset: int = 0) -> list[ConversationSummary]:
        """Newest first; `search` matches titles and message text."""
        where, arguments = self._search_clause(search.strip()) if search.strip() else ("1", [])
        sql = (f"SELECT c.id, c.title, c.created_at, c.updated_at, c.preset, "
               f"(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count "
               f"FROM conversations c WHERE {where} "
               f"ORDER BY c.updated_at DESC, c.rowid DESC LIMIT ? OFFSET ?")
        with self._reading("list the conversations") as db:
            rows = db.execute(sql, [*arguments, -1 if limit is None else limit, offset]).fetchall()
        return [ConversationSummary(r["id"], r["title"], r["created_at"], r["updated_at"],
                                    r["message_count"], r["preset"]) for r in rows]

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        self.update_conversation(conversation_id, title=title)

    def update_conversation(self, conversation_id: str, *, title: str | None = None,
                            system_prompt: str | None = None, preset: str | None = None,
                            sampling: SamplingValues | None = None, thinking: ThinkingSetting | None = None) -> None:
        changes = {"title": title, "system_prompt": system_prompt, "preset": preset,
                   "sampling": json.dumps(sampling.as_dict()) if sampling else None,
                   "thinking": _thinking_to_json(thinking) if thinking else None}
        changes = {column: value for column, value in changes.items() if value is not None}
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._writing("change the conversation") as db:
            cursor = db.execute(f"UPDATE conversations SET {assignments}, updated_at = ? WHERE id = ?",
                                [*changes.values(), time.time(), conversation_id])
            _require(cursor.rowcount, conversation_id)

    def delete_conversation(self, conversation_id: str) -> None:
        """The conversation, its messages, attachments, their chunks and the copies of their files."""
        with self._writing("delete the conversation") as db:
            cursor = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            _require(cursor.rowcount, conversation_id)
        shutil.rmtree(self.attachments_folder / conversation_id, ignore_errors=True)

    @property
    def attachments_folder(self) -> Path:
        return self.path.parent / ATTACHMENTS_FOLDER

    def load_conversation(self, conversation_id: str) -> Conversation:
        """The whole tree, with the selected branch; an answer still streaming shows what has arrived."""
        with self._reading("open the conversation") as db:
            header = db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if header is None:
                raise _not_found(conversation_id)
            rows = db.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq",
                              (conversation_id,)).fetchall()
            attachments = self._attachments_of(db, conversation_id)
        with self._pending_lock:
            messages = [_message_from_row(row, self._pending.get(row["id"]), attachments.get(row["id"], ()))
                        for row in rows]
        return Conversation.restore(
            messages, id=header["id"], title=header["title"], system_prompt=header["system_prompt"],
            created_at=header["created_at"], updated_at=header["updated_at"], preset=header["preset"],
            sampling=_sampling_from_json(header["sampling"], header["preset"]),
            current_leaf_id=header["current_leaf_id"], thinking=_thinking_from_json(header["thinking"]))

    def set_current_leaf(self, conversation_id: str, message_id: str) -> None:
        """Remember which branch is shown (after Conversation.select)."""
        with self._writing("switch the branch") as db:
            _check_parent(db, conversation_id, message_id)
            db.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = ?",
                       (message_id, conversation_id))

    # --- messages ---

    def add_message(self, conversation_id: str, role: str, content: str,
                    parent_id: str | None | object = _AFTER_SELECTED, *, stopped_early: bool = False,
                    stats: MessageStats | None = None, attachments: tuple[Attachment, ...] = (),
                    chunks: Mapping[str, tuple[Chunk, ...] | EmbeddedChunks] | None = None,
                    sources: tuple[Source, ...] = ()) -> Message:
        """Add a finished message under `parent_id` (default: the selected leaf) and select it.
        The first user message titles an untitled conversation. Each attachment's file (its `path`) is copied into
        the chat's attachments folder and its `chunks` (by attachment id: the chunks, or EmbeddedChunks with their
        vectors) indexed; the message returned names the copies. A file that cannot be copied raises StoreError and
        nothing is saved."""
        folder = self.attachments_folder / conversation_id
        kept = _copy_attachments(attachments, folder)
        try:
            with self._writing("save the message") as db:
                parent = _selected_leaf(db, conversation_id) if parent_id is _AFTER_SELECTED else parent_id
                message = Message(role, content, stopped_early, parent_id=parent, stats=stats, attachments=kept,
                                  sources=tuple(sources))
                _insert_message(db, conversation_id, message, complete=True, folder=self.attachments_folder)
                for attachment_id, pieces in (chunks or {}).items():
                    _insert_document_chunks(db, attachment_id, pieces)
                _select_and_touch(db, conversation_id, message)
        except BaseException:
            for attachment in kept:
                if attachment.path:
                    Path(attachment.path).unlink(missing_ok=True)
            raise
        return message

    def attachment_chunks(self, attachment_id: str) -> list[Chunk]:
        """A stored document's chunks in reading order."""
        with self._reading("read the attached document") as db:
            return chunk_index.chunks_of(db, attachment_id)

    def search_attachments(self, question: str, attachment_ids: Sequence[str], limit: int = 40) -> list[FoundChunk]:
        """The stored chunks of these documents that best match `question` (core.chat.attachments.index.search)."""
        with self._reading("search the attached documents") as db:
            return chunk_index.search(db, question, attachment_ids, limit=limit, full_text=self._chunk_fts)

    def attachments_have_vectors(self, attachment_ids: Sequence[str], model: str) -> bool:
        """Whether an embedding model of this file name gave vectors to any of these documents' stored chunks."""
        with self._reading("search the attached documents") as db:
            return vector_table.has_vectors(db, attachment_ids, model)

    def attachment_vectors(self, attachment_ids: Sequence[str],
                           space: VectorSpace) -> list[tuple[FoundChunk, Sequence[float]]]:
        """These documents' stored chunks that have a vector of this space, each with it."""
        with self._reading("search the attached documents") as db:
            return chunk_index.vectors_of(db, attachment_ids, space)

    def add_attachment_vectors(self, attachment_id: str, vectors: ChunkVectors) -> bool:
        """Give a stored document's chunks their vectors (from an embedding model read after the chat was stored);
        vectors already there for the same chunk and space are replaced. False when the document is gone."""
        with self._writing("store the attached document's vectors") as db:
            if db.execute("SELECT 1 FROM attachments WHERE id = ?", (attachment_id,)).fetchone() is None:
                return False
            vector_table.insert_vectors(db, attachment_id, vectors)
            return True

    def stored_chunks(self) -> "StoredChunks":
        """The stored documents' chunks as core.chat.attachments.meaning searches them (a follow-up question)."""
        return StoredChunks(self)

    def _attachments_of(self, db: sqlite3.Connection, conversation_id: str) -> dict[str, tuple[Attachment, ...]]:
        rows = db.execute("SELECT a.* FROM attachments a JOIN messages m ON m.id = a.message_id "
                          "WHERE m.conversation_id = ? ORDER BY a.message_id, a.position", (conversation_id,))
        found: dict[str, list[Attachment]] = {}
        for row in rows:
            path = str(self.attachments_folder / row["file"]) if row["file"] else ""
            found.setdefault(row["message_id"], []).append(Attachment(
                row["name"], row["kind"], row["tokens"], row["size_bytes"], row["used"], id=row["id"], path=path))
        return {message_id: tuple(items) for message_id, items in found.items()}

    def begin_answer(self, conversation_id: str, parent_id: str | None) -> str:
        """Start an empty assistant answer under `parent_id`, selected; returns its message id."""
        message = Message("assistant", "", parent_id=parent_id)
        with self._writing("start saving the answer") as db:
            _insert_message(db, conversation_id, message, complete=False)
            _select_and_touch(db, conversation_id, message)
        with self._pending_lock:
            self._pending[message.id] = _PendingAnswer()
        self._start_flusher()
        return message.id

    def append_answer(self, message_id: str, text_delta: str) -> None:
        """Cheap: buffers the text; writes when FLUSH_CHARS have gathered or FLUSH_INTERVAL_S passed."""
        with self._pending_lock:
            pending = self._pending.get(message_id)
            if pending is None:
                raise StoreError("Could not add to the answer: it is not being written (it was finished, "
                                 "or never begun).")
            pending.add(text_delta)
            if pending.due(time.monotonic()):
                self._write_pending(message_id, pending)

    def append_reasoning(self, message_id: str, text_delta: str) -> None:
        """Like append_answer, for the answer's thinking (kept in its own column, never in the text)."""
        with self._pending_lock:
            pending = self._pending.get(message_id)
            if pending is None:
                raise StoreError("Could not add to the answer's thinking: the answer is not being written (it "
                                 "was finished, or never begun).")
            pending.add_reasoning(text_delta)
            if pending.due(time.monotonic()):
                self._write_pending(message_id, pending)

    def finish_answer(self, message_id: str, stats: MessageStats | None = None, stopped_early: bool = False,
                      *, text: str | None = None, reasoning: str | None = None,
                      tool_calls: tuple[ToolCall, ...] = ()) -> None:
        """Write the rest of the answer, its tool calls and its stats. `text` and `reasoning`, when given, are
        the whole answer and thinking and replace what was streamed (the engine's final values)."""
        with self._pending_lock:
            pending = self._pending.pop(message_id, None)
            content_sql, content_arg = _final_or_appended("content", text, pending.text() if pending else "")
            reasoning_sql, reasoning_arg = _final_or_appended("reasoning", reasoning,
                                                              pending.reasoning() if pending else "")
            try:
                with self._writing("save the answer") as db:
                    db.execute(f"UPDATE messages SET content = {content_sql}, reasoning = {reasoning_sql}, "
                               "tool_calls = ?, complete = 1, stopped_early = ?, stats = ? WHERE id = ?",
                               (content_arg, reasoning_arg, _tool_calls_to_json(tool_calls), int(stopped_early),
                                _stats_to_json(stats), message_id))
                    db.execute("UPDATE conversations SET updated_at = ? WHERE id = "
                               "(SELECT conversation_id FROM messages WHERE id = ?)", (time.time(), message_id))
            except StoreError:
                if pending is not None:
                    self._pending[message_id] = pending  # keep the text for a retry
                raise

    def flush(self) -> None:
        """Write every buffered answer text now (e.g. before the app quits)."""
        with self._pending_lock:
            for message_id, pending in list(self._pending.items()):
                if pending.size:
                    self._write_pending(message_id, pending)

    def close(self) -> None:
        if self._closed:
            return
        self._closing.set()
        if self._flusher is not None:
            self._flusher.join(timeout=2)
        try:
            self.flush()
        finally:
            self._closed = True
            self._close_connections()

    def __enter__(self) -> "ChatStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- streaming internals ---

    def _write_pending(self, message_id: str, pending: _PendingAnswer) -> None:
        with self._writing("save the answer") as db:
            db.execute("UPDATE messages SET content = content || ?, reasoning = reasoning || ? WHERE id = ?",
                       (pending.text(), pending.reasoning(), message_id))
        pending.written(time.monotonic())

    def _start_flusher(self) -> None:
        with self._registry_lock:
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_stalled, name="chat-store-flusher",
                                                 daemon=True)
                self._flusher.start()

    def _flush_stalled(self) -> None:
        """Writes text that has waited FLUSH_INTERVAL_S (a stream that paused); ends when idle."""
        while not self._closing.wait(FLUSH_INTERVAL_S / 2):
            with self._pending_lock:
                if not self._pending:
                    self._flusher = None
                    return
                now = time.monotonic()
                for message_id, pending in list(self._pending.items()):
                    if pending.due(now):
                        try:
                            self._write_pending(message_id, pending)
                        except StoreError as error:
                            log.warning("could not write streamed text: %s", error)

    # --- connections and transactions ---

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("The chat history is closed.")
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db = db
            with self._registry_lock:
                self._close_connections_of_ended_threads()
                self._connections.append((weakref.ref(threading.current_thread()), db))
        return db

    def _close_connections_of_ended_threads(self) -> None:
        alive = []
        for thread_ref, db in self._connections:
            thread = thread_ref()
            if thread is not None and thread.is_alive():
                alive.append((thread_ref, db))
            else:
                db.close()
        self._connections = alive

    def _close_connections(self) -> None:
        with self._registry_lock:
            for _, db in self._connections:
                db.close()
            self._connections = []
            self._local = threading.local()

    @contextmanager
    def _writing(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._sqlite_errors(action):
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._sqlite_errors(action):
            db = self._connection()
            db.execute("BEGIN")
            try:
                yield db
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")

    @contextmanager
    def _sqlite_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise _translate(error, action, self.path) from error

    # --- search ---

    def _search_clause(self, text: str) -> tuple[str, list]:
        like = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
        title = r"c.title LIKE ? ESCAPE '\'"
        words = re.findall(r"\w+", text)
        if self._fts and words:
            query = " ".join(f'"{word}"*' for word in words)
            return (f"({title} OR c.id IN (SELECT m.conversation_id FROM messages_fts f "
                    f"JOIN messages m ON m.seq = f.rowid WHERE messages_fts MATCH ?))", [like, query])
        return (f"({title} OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id "
                rf"AND m.content LIKE ? ESCAPE '\'))", [like, like])


@dataclass(frozen=True)
class StoredChunks:
    """A ChatStore's document chunks, searched by words and by meaning (as meaning.SearchableChunks: a follow-up
    question's search, core.chat.attachments.retrieval.follow_up_sources)."""

    store: ChatStore

    def search(self, question: str, attachment_ids: Sequence[str], limit: int = 40) -> list[FoundChunk]:
        return self.store.search_attachments(question, attachment_ids, limit)

    def has_vectors(self, attachment_ids: Sequence[str], model: str) -> bool:
        return self.store.attachments_have_vectors(attachment_ids, model)

    def chunks_of(self, attachment_id: str) -> list[Chunk]:
        return self.store.attachment_chunks(attachment_id)

    def vectors_of(self, attachment_ids: Sequence[str],
                   space: VectorSpace) -> list[tuple[FoundChunk, Sequence[float]]]:
        return self.store.attachment_vectors(attachment_ids, space)


class _Damaged(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# opening helpers


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise NewerDatabase(f"The chat history {path} was written by a newer LlamaDesk (format {version}; "
                            f"this version reads up to {SCHEMA_VERSION}). Update LlamaDesk; the file was "
                            "left untouched.")
    for target, statements in MIGRATIONS:
        if target > version:
            _run_migration(db, target, statements)
            log.info("chat database %s migrated to version %d", path, target)


def _run_migration(db: sqlite3.Connection, target: int, statements: tuple[str, ...]) -> None:
    """SQLite's recipe for schema changes: foreign keys off, one transaction, check, then on again."""
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                db.execute(statement)
            broken = db.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise _Damaged(f"{len(broken)} broken reference(s) found while upgrading to version {target}")
            db.execute(f"PRAGMA user_version = {int(target)}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.execute("PRAGMA foreign_keys = ON")


def _ensure_search_index(db: sqlite3.Connection) -> bool:
    """Install the FTS5 index if this SQLite has FTS5; drop its triggers if it lacks it. True if usable."""
    triggers = {row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'messages_fts_%'")}
    if not fts5_available():
        if triggers:
            log.warning("this SQLite lacks FTS5: chat search falls back to plain matching")
            _in_transaction(db, [f"DROP TRIGGER {name}" for name in sorted(triggers)])
        return False
    if triggers != set(_SEARCH_TRIGGERS):
        _in_transaction(db, ["DROP TABLE IF EXISTS messages_fts",
                             *[f"DROP TRIGGER IF EXISTS {name}" for name in _SEARCH_TRIGGERS],
                             *_SEARCH_INDEX])
    return True


def _close_interrupted_answers(db: sqlite3.Connection) -> int:
    """Answers still unfinished in a file being opened were cut off (the app died): keep their text."""
    count = _in_transaction(db, ["UPDATE messages SET complete = 1, stopped_early = 1 WHERE complete = 0"])
    if count:
        log.warning("%d answer(s) were cut off when LlamaDesk last stopped; their partial text is kept", count)
    return count


def _in_transaction(db: sqlite3.Connection, statements: list[str]) -> int:
    """Run statements in one transaction; returns the rows changed by the last one."""
    db.execute("BEGIN IMMEDIATE")
    try:
        cursor = None
        for statement in statements:
            cursor = db.execute(statement)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return cursor.rowcount if cursor is not None else 0


# --------------------------------------------------------------------------------------------
# row helpers


def _insert_message(db: sqlite3.Connection, conversation_id: str, message: Message, *, complete: bool,
                    folder: Path | None = None) -> None:
    if message.parent_id is not None:
        _check_parent(db, conversation_id, message.parent_id)
    elif db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
        raise _not_found(conversation_id)
    db.execute(
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, stopped_early, complete, "
        "stats, created_at, reasoning, tool_calls, sources) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (message.id, conversation_id, message.parent_id, message.role, message.content,
         int(message.stopped_early), int(complete), _stats_to_json(message.stats), message.created_at,
         message.reasoning, _tool_calls_to_json(message.tool_calls), _sources_to_json(message.sources)))
    for position, attachment in enumerate(message.attachments):
        db.execute("INSERT INTO attachments (id, message_id, position, name, kind, file, tokens, size_bytes, used, "
                   "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (attachment.id, message.id, position, attachment.name, attachment.kind,
                    _relative_file(attachment.path, folder), attachment.tokens, attachment.size_bytes,
                    attachment.used, message.created_at))


def _insert_document_chunks(db: sqlite3.Connection, attachment_id: str,
                            pieces: tuple[Chunk, ...] | EmbeddedChunks) -> None:
    if not isinstance(pieces, EmbeddedChunks):
        pieces = EmbeddedChunks(tuple(pieces))
    chunk_index.insert_chunks(db, attachment_id, pieces.chunks)
    if pieces.vectors is not None:
        vector_table.insert_vectors(db, attachment_id, pieces.vectors)


def _check_parent(db: sqlite3.Connection, conversation_id: str, message_id: str) -> None:
    row = db.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None or row[0] != conversation_id:
        raise ConversationNotFound("That message is not part of this conversation any more (it may have "
                                   "been deleted).")


def _selected_leaf(db: sqlite3.Connection, conversation_id: str) -> str | None:
    row = db.execute("SELECT current_leaf_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    if row is None:
        raise _not_found(conversation_id)
    return row[0]


def _select_and_touch(db: sqlite3.Connection, conversation_id: str, message: Message) -> None:
    db.execute("UPDATE conversations SET current_leaf_id = ?, updated_at = ? WHERE id = ?",
               (message.id, time.time(), conversation_id))
    if message.role == "user":
        db.execute("UPDATE conversations SET title = ? WHERE id = ? AND title = ''",
                   (suggest_title(message.content), conversation_id))


def _message_from_row(row: sqlite3.Row, pending: _PendingAnswer | None,
                      attachments: tuple[Attachment, ...] = ()) -> Message:
    content = row["content"] + (pending.text() if pending else "")
    reasoning = row["reasoning"] + (pending.reasoning() if pending else "")
    return Message(row["role"], content, bool(row["stopped_early"]), id=row["id"], parent_id=row["parent_id"],
                   created_at=row["created_at"], stats=_stats_from_json(row["stats"]), reasoning=reasoning,
                   tool_calls=_tool_calls_from_json(row["tool_calls"]), attachments=attachments,
                   sources=_sources_from_json(row["sources"]))


def _copy_attachments(attachments: tuple[Attachment, ...], folder: Path) -> tuple[Attachment, ...]:
    """Copy each attached file into the chat's folder (named by its id); the attachments naming their copies."""
    kept: list[Attachment] = []
    try:
        for attachment in attachments:
            if not attachment.path:
                kept.append(attachment)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            copy = folder / (attachment.id + Path(attachment.path).suffix.lower())
            shutil.copyfile(attachment.path, copy)
            kept.append(dataclasses.replace(attachment, path=str(copy)))
    except OSError as error:
        for attachment in kept:
            if attachment.path:
                Path(attachment.path).unlink(missing_ok=True)
        raise StoreError(f"Could not keep a copy of {attachment.name} with the chat: {error.strerror or error}. "
                         "Nothing was sent.") from error
    return tuple(kept)


def _relative_file(path: str, folder: Path | None) -> str:
    """The copy's place under the attachments folder ('' for a file kept elsewhere or not at all)."""
    if not path or folder is None:
        return ""
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return ""


def _sources_to_json(sources: tuple[Source, ...]) -> str | None:
    return json.dumps([source.as_dict() for source in sources]) if sources else None


def _sources_from_json(text: str | None) -> tuple[Source, ...]:
    if not text:
        return ()
    try:
        return tuple(Source.from_dict(item) for item in json.loads(text))
    except (ValueError, TypeError, AttributeError) as error:
        log.warning("ignoring unreadable sources %r: %s", text[:80], error)
        return ()


def _final_or_appended(column: str, final: str | None, buffered: str) -> tuple[str, str]:
    """SQL and argument that set `column` to the final value when there is one, else append what was buffered."""
    return ("?", final) if final is not None else (f"{column} || ?", buffered)


def _tool_calls_to_json(calls: tuple[ToolCall, ...]) -> str | None:
    return json.dumps([call.as_dict() for call in calls]) if calls else None


def _tool_calls_from_json(text: str | None) -> tuple[ToolCall, ...]:
    if not text:
        return ()
    try:
        return tuple(ToolCall.from_dict(item) for item in json.loads(text))
    except (ValueError, TypeError, AttributeError, ChatError) as error:
        log.warning("ignoring unreadable tool calls %r: %s", text[:80], error)
        return ()


def _thinking_to_json(thinking: ThinkingSetting) -> str:
    return json.dumps(thinking.as_dict())


def _thinking_from_json(text: str | None) -> ThinkingSetting:
    if not text:
        return ThinkingSetting()
    try:
        return ThinkingSetting.from_dict(json.loads(text))
    except (ValueError, TypeError, AttributeError, ChatError) as error:
        log.warning("ignoring an unreadable thinking choice %r: %s", text[:80], error)
        return ThinkingSetting()


def _stats_to_json(stats: MessageStats | None) -> str | None:
    return json.dumps(stats.as_dict()) if stats else None


def _stats_from_json(text: str | None) -> MessageStats | None:
    if not text:
        return None
    try:
        return MessageStats.from_dict(json.loads(text))
    except (ValueError, TypeError, ChatError) as error:
        log.warning("ignoring unreadable answer stats %r: %s", text[:80], error)
        return None


def _sampling_from_json(text: str | None, preset: str) -> SamplingValues:
    fallback = PRESETS.get(preset, SamplingValues())
    if not text:
        return fallback
    try:
        return SamplingValues.from_dict(json.loads(text))
    except (ValueError, TypeError, ChatError) as error:
        log.warning("ignoring unreadable sampling settings %r: %s", text[:80], error)
        return fallback


def _require(rowcount: int, conversation_id: str) -> None:
    if rowcount == 0:
        raise _not_found(conversation_id)


def _not_found(conversation_id: str) -> ConversationNotFound:
    return ConversationNotFound(f"That conversation is no longer in the history (it may have been deleted; "
                                f"id {conversation_id}).")
