"""Attachments kept with the chat: files copied into the data folder, described in SQLite (schema 4, migrated from
every earlier version), their chunks searchable, and all of it removed with the chat."""
from __future__ import annotations

import sqlite3

import pytest

from core.chat.attachments.attachment import Attachment, Source
from core.chat.attachments.chunks import Chunk
from core.chat.store import SCHEMA_VERSION, ChatStore, StoreError, default_path
from tests.unit.test_store_migrations import database_at


def attach(store: ChatStore, conversation_id: str, tmp_path):
    original = tmp_path / "harbour.txt"
    original.write_text("The harbour master keeps the spare key under the blue boat.", encoding="utf-8")
    attachment = Attachment("harbour.txt", "document", 14, original.stat().st_size, "retrieved", path=str(original))
    source = Source(attachment.id, "harbour.txt", None, 0, "The harbour master keeps the spare key under the blue boat.")
    chunks = {attachment.id: (Chunk(0, None, source.text), Chunk(1, None, "Gulls are loud in the morning."))}
    message = store.add_message(conversation_id, "user", "Where is the key?", attachments=(attachment,),
                                chunks=chunks, sources=(source,))
    return message, original


@pytest.mark.parametrize("version", range(0, SCHEMA_VERSION))
def test_a_database_of_every_earlier_version_takes_attachments_after_the_upgrade(version, tmp_path):
    database_at(version)
    with ChatStore() as store:
        conversation = store.create_conversation()
        message, _ = attach(store, conversation.id, tmp_path)
        loaded = store.load_conversation(conversation.id).message(message.id)
        assert [a.name for a in loaded.attachments] == ["harbour.txt"]
        assert [s.label for s in loaded.sources] == ["harbour.txt part 1"]
        found = store.search_attachments("where is the spare key", [loaded.attachments[0].id])
        assert found and "blue boat" in found[0].text


def test_the_file_is_copied_into_the_data_folder_and_the_message_names_the_copy(tmp_path):
    with ChatStore() as store:
        conversation = store.create_conversation()
        message, original = attach(store, conversation.id, tmp_path)
        copy = message.attachments[0].path
        assert copy.startswith(str(default_path().parent / "attachments" / conversation.id))
        original.unlink()                                         # the chat keeps its own copy
        reopened = store.load_conversation(conversation.id).message(message.id).attachments[0]
        assert reopened.path == copy and open(copy, encoding="utf-8").read().startswith("The harbour master")
        turn = store.load_conversation(conversation.id).engine_messages()[-1]
        assert "blue boat" in turn["content"] and turn["content"].endswith("Where is the key?")


def test_deleting_the_chat_removes_its_attachments_chunks_and_files(tmp_path):
    with ChatStore() as store:
        conversation = store.create_conversation()
        message, _ = attach(store, conversation.id, tmp_path)
        attachment_id = message.attachments[0].id
        store.delete_conversation(conversation.id)
        assert not (store.attachments_folder / conversation.id).exists()
        assert store.attachment_chunks(attachment_id) == []
        assert store.search_attachments("spare key", [attachment_id]) == []
    db = sqlite3.connect(default_path())
    assert db.execute("SELECT count(*) FROM attachments").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM attachment_chunks_fts WHERE attachment_chunks_fts MATCH 'key'").fetchone()[0] == 0


def test_a_file_that_cannot_be_copied_saves_nothing(tmp_path):
    with ChatStore() as store:
        conversation = store.create_conversation()
        gone = Attachment("gone.txt", "document", 3, 10, path=str(tmp_path / "gone.txt"))
        with pytest.raises(StoreError, match="Could not keep a copy of gone.txt with the chat"):
            store.add_message(conversation.id, "user", "Hi", attachments=(gone,))
        assert store.load_conversation(conversation.id).messages == []


def test_chunk_vectors_are_kept_as_float32_blobs_under_their_model_and_removed_with_the_chat(tmp_path):
    from core.chat.attachments.vectors import ChunkVectors, EmbeddedChunks, VectorSpace

    space = VectorSpace("sense-embed.gguf", 3)
    original = tmp_path / "harbour.txt"
    original.write_text("The spare key is under the blue boat.", encoding="utf-8")
    attachment = Attachment("harbour.txt", "document", 14, original.stat().st_size, "retrieved", path=str(original))
    chunks = (Chunk(0, None, "The spare key is under the blue boat."), Chunk(1, 2, "Gulls are loud in the morning."))
    vectors = ChunkVectors(space, {0: (0.6, 0.8, 0.0), 1: (0.0, 0.0, 1.0)})
    with ChatStore() as store:
        conversation = store.create_conversation()
        store.add_message(conversation.id, "user", "Where is the key?", attachments=(attachment,),
                          chunks={attachment.id: EmbeddedChunks(chunks, vectors)})
        stored = store.stored_chunks()
        assert stored.has_vectors([attachment.id], "sense-embed.gguf")
        assert not stored.has_vectors([attachment.id], "other-embed.gguf")
        found = stored.vectors_of([attachment.id], space)
        assert [(chunk.position, chunk.page, chunk.text) for chunk, _ in found] == [(c.position, c.page, c.text)
                                                                                  for c in chunks]
        assert [value for _, vector in found for value in vector] == pytest.approx([0.6, 0.8, 0.0, 0.0, 0.0, 1.0])
        assert stored.vectors_of([attachment.id], VectorSpace("sense-embed.gguf", 4)) == []
        assert stored.vectors_of([attachment.id], VectorSpace("other-embed.gguf", 3)) == []
        db = sqlite3.connect(default_path())
        assert db.execute("SELECT model, dimension, length(vector), typeof(vector) FROM attachment_vectors "
                          "ORDER BY position").fetchall() == [("sense-embed.gguf", 3, 12, "blob")] * 2
        store.delete_conversation(conversation.id)
        assert db.execute("SELECT count(*) FROM attachment_vectors").fetchone()[0] == 0
        db.close()


def test_vectors_added_later_to_stored_chunks_are_found_as_a_follow_up_reads_them(tmp_path):
    from core.chat.attachments.vectors import ChunkVectors, VectorSpace

    space = VectorSpace("sense-embed.gguf", 2)
    with ChatStore() as store:
        conversation = store.create_conversation()
        message, _ = attach(store, conversation.id, tmp_path)          # stored without vectors
        document = message.attachments[0].id
        stored = store.stored_chunks()
        assert not stored.has_vectors([document], "sense-embed.gguf")
        assert [chunk.text for chunk in stored.chunks_of(document)][1] == "Gulls are loud in the morning."

        assert store.add_attachment_vectors(document, ChunkVectors(space, {0: (1.0, 0.0), 1: (0.6, 0.8)}))
        assert store.add_attachment_vectors(document, ChunkVectors(space, {0: (1.0, 0.0), 1: (0.0, 1.0)}))  # again
        assert stored.has_vectors([document], "sense-embed.gguf")
        found = stored.vectors_of([document], space)
        assert [chunk.text for chunk, _ in found] == ["The harbour master keeps the spare key under the blue boat.",
                                                      "Gulls are loud in the morning."]
        assert [value for _, vector in found for value in vector] == pytest.approx([1.0, 0.0, 0.0, 1.0])

        assert not store.add_attachment_vectors("gone", ChunkVectors(space, {0: (1.0, 0.0)}))
        store.delete_conversation(conversation.id)
        assert not store.add_attachment_vectors(document, ChunkVectors(space, {0: (1.0, 0.0)}))
        assert not stored.has_vectors([document], "sense-embed.gguf")
