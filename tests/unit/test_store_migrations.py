"""Schema migrations: every earlier version of the chat database opens, upgraded, with its data kept."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.chat.conversation import PRESETS, ThinkingSetting
from core.chat.store import MIGRATIONS, SCHEMA_VERSION, ChatStore, StoreError, default_path, fts5_available


def database_at(version: int) -> Path:
    """A chat database built by the migrations up to `version`, as that release would have left it."""
    path = default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    for target, statements in MIGRATIONS:
        if target <= version:
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
    db.close()
    return path


def fill_version_1(path: Path) -> None:
    """Two conversations written by version 1: flat message lists ordered by position."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executemany("INSERT INTO conversations VALUES (?, ?, ?, ?, ?)", [
        ("c-old", "Old chat", "Be terse.", 100.0, 200.0),
        ("c-new", "Newer chat", "", 300.0, 400.0)])
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", [
        ("m3", "c-old", 2, "user", "And the capital of Italy?", 103.0),   # inserted out of order
        ("m1", "c-old", 0, "user", "Capital of France?", 101.0),
        ("m2", "c-old", 1, "assistant", "Paris.", 102.0),
        ("m4", "c-old", 3, "assistant", "Rome.", 104.0),
        ("n1", "c-new", 0, "user", "Hello", 301.0),
        ("orphan", "c-gone", 0, "user", "left behind by a bug", 50.0)])
    db.close()


def columns(path: Path) -> dict[str, list[str]]:
    db = sqlite3.connect(path)
    tables = [row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'messages_fts%' ORDER BY name")]
    result = {table: [row[1] for row in db.execute(f"PRAGMA table_info({table})")] for table in tables}
    db.close()
    return result


@pytest.mark.parametrize("version", range(0, SCHEMA_VERSION))
def test_every_earlier_version_is_upgraded_to_the_current_schema(version, tmp_path):
    fresh_path = tmp_path / "fresh.sqlite3"
    with ChatStore(fresh_path):
        pass
    path = database_at(version)
    with ChatStore() as store:
        store.create_conversation(title="works")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    assert columns(path) == columns(fresh_path)


def test_version_1_chats_become_message_chains_with_everything_kept():
    fill_version_1(database_at(1))
    with ChatStore() as store:
        summaries = store.list_conversations()
        old = store.load_conversation("c-old")
        new = store.load_conversation("c-new")
    assert [s.id for s in summaries] == ["c-new", "c-old"]
    assert [s.message_count for s in summaries] == [1, 4]
    assert (old.title, old.system_prompt, old.created_at, old.updated_at) == ("Old chat", "Be terse.", 100.0, 200.0)
    assert [m.content for m in old.messages] == ["Capital of France?", "Paris.", "And the capital of Italy?",
                                                 "Rome."]
    assert [m.parent_id for m in old.messages] == [None, "m1", "m2", "m3"]
    assert old.current_leaf_id == "m4" and new.current_leaf_id == "n1"
    assert (old.preset, old.sampling) == ("Balanced", PRESETS["Balanced"])
    assert not any(m.stopped_early or m.stats for m in old.messages)


def test_migrated_chats_can_be_continued_and_searched():
    fill_version_1(database_at(1))
    with ChatStore() as store:
        reply = store.add_message("c-old", "user", "Thanks!")
        assert reply.parent_id == "m4"
        assert [s.id for s in store.list_conversations("paris")] == ["c-old"]
        assert store.uses_full_text_search == fts5_available()


def test_orphan_messages_from_version_1_are_dropped_not_fatal():
    fill_version_1(database_at(1))
    with ChatStore() as store:
        assert store.recovered is None
    db = sqlite3.connect(default_path())
    assert db.execute("SELECT count(*) FROM messages WHERE id = 'orphan'").fetchone()[0] == 0
    db.close()


def test_a_failed_migration_leaves_the_file_at_its_old_version_with_its_data():
    path = database_at(1)
    fill_version_1(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO messages VALUES ('bad', 'c-new', 1, 'robot', 'beep', 302.0)")  # v2 refuses it
    db.close()
    with pytest.raises(StoreError, match="reported an error"):
        ChatStore()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 7
    db.close()


def fill_version_2(path: Path) -> None:
    """A version-2 chat: a tree with a regenerated answer, custom sampling and answer stats."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO conversations (id, title, system_prompt, created_at, updated_at, preset, sampling, "
               "current_leaf_id) VALUES ('c2', 'Tree chat', '', 10.0, 20.0, 'Precise', NULL, 'a2')")
    db.executemany("INSERT INTO messages (id, conversation_id, parent_id, role, content, stopped_early, complete, "
                   "stats, created_at) VALUES (?, 'c2', ?, ?, ?, ?, 1, ?, ?)", [
                       ("q", None, "user", "Two plus two?", 0, None, 11.0),
                       ("a1", "q", "assistant", "Five.", 1, None, 12.0),
                       ("a2", "q", "assistant", "Four.", 0, '{"completion_tokens": 3, "context_size": 2048}', 13.0)])
    db.close()


def test_version_2_chats_open_with_no_thinking_and_the_models_default_choice():
    fill_version_2(database_at(2))
    with ChatStore() as store:
        chat = store.load_conversation("c2")
        assert [m.content for m in chat.messages] == ["Two plus two?", "Four."]
        assert [m.content for m in chat.siblings("a2")] == ["Five.", "Four."]
        assert all(m.reasoning == "" and m.tool_calls == () for m in chat.all_messages())
        assert chat.thinking == ThinkingSetting()
        assert (chat.messages[-1].stats.completion_tokens, chat.messages[-1].stats.reasoning_tokens) == (3, 0)
        assert chat.engine_messages() == [{"role": "user", "content": "Two plus two?"},
                                          {"role": "assistant", "content": "Four."}]
        answer = store.begin_answer("c2", "a2")
        store.append_reasoning(answer, "Continue politely.")
        store.finish_answer(answer, None, text="Anything else?")
        assert store.load_conversation("c2").messages[-1].reasoning == "Continue politely."


def fill_version_4(path: Path) -> str:
    """A version-4 chat with a long document sent in parts: its chunks stored, and no vectors (none were kept)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO conversations (id, title, system_prompt, created_at, updated_at, current_leaf_id) "
               "VALUES ('c4', 'Logbook chat', '', 10.0, 20.0, 'a')")
    sources = '[{"attachment_id": "doc", "name": "logbook.txt", "page": null, "position": 0, "text": "Tides."}]'
    db.executemany("INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, sources) "
                   "VALUES (?, 'c4', ?, ?, ?, ?, ?)", [("q", None, "user", "When is high tide?", 11.0, sources),
                                                       ("a", "q", "assistant", "At six.", 12.0, None)])
    db.execute("INSERT INTO attachments (id, message_id, position, name, kind, tokens, size_bytes, used, created_at) "
               "VALUES ('doc', 'q', 0, 'logbook.txt', 'document', 9000, 36000, 'retrieved', 11.0)")
    db.executemany("INSERT INTO attachment_chunks (attachment_id, position, page, text) VALUES ('doc', ?, NULL, ?)",
                   [(0, "Tides."), (1, "The keeper's cat is called Marmalade."), (2, "Nets were mended.")])
    db.close()
    return "doc"


def test_version_4_chats_with_documents_get_the_vector_table_and_follow_ups_search_by_words():
    from core.chat.attachments.attachment import Attachment
    from core.chat.attachments.chunks import Chunk
    from core.chat.attachments.retrieval import follow_up_sources
    from core.chat.attachments.vectors import ChunkVectors, EmbeddedChunks, VectorSpace
    from tests.unit.test_attachments import SenseEmbedder

    document_id = fill_version_4(database_at(4))
    with ChatStore() as store:
        chat = store.load_conversation("c4")
        assert [a.used for a in chat.messages[0].attachments] == ["retrieved"]
        assert not store.stored_chunks().has_vectors([document_id], "sense-embed.gguf")
        found = follow_up_sources("What is the cat called?", chat.messages, store.stored_chunks(), 500,
                                  embed=SenseEmbedder())
        assert [source.text for source in found] == ["The keeper's cat is called Marmalade."]
        later = Attachment("note.txt", "document", 5, 20, "retrieved")        # the migrated chat keeps vectors too
        store.add_message("c4", "user", "And this?", attachments=(later,), chunks={later.id: EmbeddedChunks(
            (Chunk(0, None, "A note."),), ChunkVectors(VectorSpace("sense-embed.gguf", 2), {0: (1.0, 0.0)}))})
        assert store.stored_chunks().has_vectors([later.id], "sense-embed.gguf")
    db = sqlite3.connect(default_path())
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    db.close()
