"""The chat store: SQLite persistence, streaming writes that survive a killed app, recovery from damage."""
from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from core.platform import locations
from core.chat.conversation import PRESETS, Conversation, MessageStats, SamplingValues, ThinkingSetting, ToolCall
from core.chat.store import (FLUSH_CHARS, ChatStore, ConversationNotFound, DatabaseCorrupt, DatabaseLocked,
                        DiskFull, NewerDatabase, SCHEMA_VERSION, StoreError, _translate, default_path,
                        fts5_available)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store():
    with ChatStore() as opened:
        yield opened


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def chat(store: ChatStore, question: str = "What is 2+2?", answer: str = "4"):
    conversation = store.create_conversation(system_prompt="Be brief.")
    asked = store.add_message(conversation.id, "user", question)
    answered = store.add_message(conversation.id, "assistant", answer)
    return conversation, asked, answered


# --- the file ---

def test_the_database_lives_in_the_data_folder_in_wal_mode_with_a_schema_version(store):
    assert store.path == default_path() == locations.data_dir() / "chats.sqlite3"
    with raw(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    assert store._connection().execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_chat_survives_closing_and_reopening():
    with ChatStore() as first:
        conversation, asked, answered = chat(first)
    with ChatStore() as second:
        loaded = second.load_conversation(conversation.id)
    assert [(m.role, m.content) for m in loaded.messages] == [("user", "What is 2+2?"), ("assistant", "4")]
    assert loaded.system_prompt == "Be brief." and loaded.title == "What is 2+2?"
    assert loaded.messages[0].id == asked.id and loaded.messages[1].parent_id == asked.id


# --- conversations ---

def test_list_is_newest_first_and_counts_messages(store):
    older, _, _ = chat(store, "First chat")
    newer = store.create_conversation(title="Second")
    rows = store.list_conversations()
    assert [r.id for r in rows] == [newer.id, older.id]
    assert rows[1].message_count == 2 and rows[0].message_count == 0
    store.add_message(older.id, "user", "bump")
    assert store.list_conversations()[0].id == older.id
    assert len(store.list_conversations(limit=1)) == 1


def test_rename_and_settings_are_saved(store):
    conversation, _, _ = chat(store)
    store.rename_conversation(conversation.id, "Arithmetic")
    creative = PRESETS["Creative"]
    store.update_conversation(conversation.id, system_prompt="Be kind.", preset="Creative", sampling=creative)
    loaded = store.load_conversation(conversation.id)
    assert (loaded.title, loaded.system_prompt, loaded.preset, loaded.sampling) == (
        "Arithmetic", "Be kind.", "Creative", creative)


def test_custom_sampling_values_round_trip(store):
    custom = SamplingValues(temperature=0.33, top_k=7, seed=1234, max_tokens=64)
    conversation = store.create_conversation(preset="Custom", sampling=custom)
    assert store.load_conversation(conversation.id).sampling == custom


def test_delete_removes_the_conversation_and_its_messages(store):
    conversation, _, _ = chat(store)
    store.delete_conversation(conversation.id)
    assert store.list_conversations() == []
    with raw(store.path) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    with pytest.raises(ConversationNotFound, match="no longer in the history"):
        store.load_conversation(conversation.id)
    with pytest.raises(ConversationNotFound):
        store.add_message(conversation.id, "user", "hello?")


# --- search ---

@pytest.fixture(params=["fts5", "like"])
def searchable(request):
    if request.param == "fts5" and not fts5_available():
        pytest.skip("this SQLite has no FTS5")
    with ChatStore(full_text_search=request.param == "fts5") as opened:
        assert opened.uses_full_text_search == (request.param == "fts5")
        yield opened


def test_search_finds_titles_and_message_text(searchable):
    recipes, _, _ = chat(searchable, "Pancake recipe please", "Mix flour, eggs and milk.")
    code, _, _ = chat(searchable, "Sort a list in Python", "Use sorted(items).")
    searchable.rename_conversation(code.id, "Python sorting")
    assert [r.id for r in searchable.list_conversations("pancake")] == [recipes.id]
    assert [r.id for r in searchable.list_conversations("FLOUR")] == [recipes.id]
    assert [r.id for r in searchable.list_conversations("sorting")] == [code.id]
    assert [r.id for r in searchable.list_conversations("sorted")] == [code.id]
    assert searchable.list_conversations("zebra") == []
    assert searchable.list_conversations('100% "quoted" _') == []


def test_search_sees_streamed_answers_once_finished_and_forgets_deleted_chats(searchable):
    conversation = searchable.create_conversation(title="Untold")
    question = searchable.add_message(conversation.id, "user", "Say a word")
    answer = searchable.begin_answer(conversation.id, question.id)
    searchable.append_answer(answer, "Serendipity")
    searchable.finish_answer(answer, None)
    assert [r.id for r in searchable.list_conversations("serendipity")] == [conversation.id]
    searchable.delete_conversation(conversation.id)
    assert searchable.list_conversations("serendipity") == []


# --- branches ---

def test_regenerated_and_edited_branches_are_stored_and_switchable(store):
    conversation, asked, first_answer = chat(store)
    second_answer = store.begin_answer(conversation.id, asked.id)  # regenerate
    store.append_answer(second_answer, "Four.")
    store.finish_answer(second_answer, MessageStats(stop_reason="stop"))
    edited = store.add_message(conversation.id, "user", "What is 3+3?", parent_id=None)  # edit and resend
    loaded = store.load_conversation(conversation.id)
    assert [m.content for m in loaded.messages] == ["What is 3+3?"]
    assert loaded.branch_position(edited.id) == (2, 2)

    leaf = loaded.select(asked.id)
    assert leaf.id == second_answer
    store.set_current_leaf(conversation.id, leaf.id)
    reloaded = store.load_conversation(conversation.id)
    assert [m.content for m in reloaded.messages] == ["What is 2+2?", "Four."]
    assert [m.content for m in reloaded.siblings(second_answer)] == ["4", "Four."]


def test_a_parent_from_another_conversation_is_refused(store):
    one, asked, _ = chat(store)
    other = store.create_conversation()
    with pytest.raises(ConversationNotFound, match="not part of this conversation"):
        store.add_message(other.id, "user", "hi", parent_id=asked.id)
    with pytest.raises(ConversationNotFound):
        store.set_current_leaf(other.id, asked.id)


# --- streaming ---

def test_a_streamed_answer_is_written_with_its_stats(store):
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "Count to five")
    answer = store.begin_answer(conversation.id, question.id)
    for word in "one two three four five".split():
        store.append_answer(answer, word + " ")
    stats = MessageStats(ttft_seconds=0.1, tokens_per_second=50.0, prompt_tokens=12, completion_tokens=5)
    store.finish_answer(answer, stats, stopped_early=False)
    message = store.load_conversation(conversation.id).messages[-1]
    assert (message.content, message.stats, message.stopped_early) == ("one two three four five ", stats, False)
    with pytest.raises(StoreError, match="not being written"):
        store.append_answer(answer, "six")


def test_appends_are_batched_not_written_one_by_one(store):
    conversation = store.create_conversation()
    answer = store.begin_answer(conversation.id, None)
    for _ in range(FLUSH_CHARS - 1):
        store.append_answer(answer, "x")
    with raw(store.path) as db:
        assert db.execute("SELECT content FROM messages WHERE id = ?", (answer,)).fetchone()[0] == ""
    store.append_answer(answer, "x")
    with raw(store.path) as db:
        assert db.execute("SELECT content FROM messages WHERE id = ?", (answer,)).fetchone()[0] == "x" * FLUSH_CHARS


def test_a_paused_stream_is_written_within_the_flush_interval(store):
    conversation = store.create_conversation()
    answer = store.begin_answer(conversation.id, None)
    store.append_answer(answer, "short")
    deadline = time.monotonic() + 2
    content = ""
    while time.monotonic() < deadline and content != "short":
        time.sleep(0.05)
        with raw(store.path) as db:
            content = db.execute("SELECT content FROM messages WHERE id = ?", (answer,)).fetchone()[0]
    assert content == "short"


def test_loading_during_a_stream_shows_the_text_so_far(store):
    conversation = store.create_conversation()
    answer = store.begin_answer(conversation.id, None)
    store.append_answer(answer, "Partial")
    loaded = store.load_conversation(conversation.id)
    assert loaded.messages[-1].content == "Partial" and loaded.current_leaf_id == answer


def test_the_final_text_can_replace_what_was_streamed(store):
    conversation = store.create_conversation()
    answer = store.begin_answer(conversation.id, None)
    store.append_answer(answer, "Hel")
    store.finish_answer(answer, None, stopped_early=True, text="Hello")
    message = store.load_conversation(conversation.id).messages[-1]
    assert (message.content, message.stopped_early) == ("Hello", True)


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys, time
    from core.chat.store import ChatStore
    store = ChatStore()
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "Count")
    answer = store.begin_answer(conversation.id, question.id)
    for number in range(50):
        store.append_answer(answer, f"{number:03d} ")
    print(conversation.id, flush=True)
    time.sleep(float(sys.argv[2]))
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)
""")
FULL_TEXT = "".join(f"{number:03d} " for number in range(50))


@pytest.mark.parametrize("how, pause", [("kill", 0.6), ("kill", 0.0), ("exit", 0.0)])
def test_an_answer_cut_off_by_a_killed_app_keeps_its_text(how, pause, llamadesk_home):
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, how, str(pause)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    expected_code = -signal.SIGKILL if how == "kill" else 3
    assert result.returncode == expected_code, result.stderr
    conversation_id = result.stdout.strip()

    with ChatStore() as reopened:
        assert reopened.interrupted_answers == 1
        answer = reopened.load_conversation(conversation_id).messages[-1]
    assert answer.role == "assistant" and answer.stopped_early
    assert FULL_TEXT.startswith(answer.content)
    if pause:
        assert answer.content == FULL_TEXT  # the flusher wrote the tail while the stream paused
    else:
        assert len(answer.content) >= len(FULL_TEXT) - FLUSH_CHARS


# --- threads ---

def test_many_threads_can_write_at_once(store):
    failures = []

    def write_a_chat(number: int) -> None:
        try:
            conversation = store.create_conversation(title=f"chat {number}")
            for turn in range(10):
                question = store.add_message(conversation.id, "user", f"question {turn}")
                answer = store.begin_answer(conversation.id, question.id)
                store.append_answer(answer, f"answer {turn}")
                store.finish_answer(answer, None)
        except Exception as error:  # noqa: BLE001 - collected for the assertion below
            failures.append(error)

    threads = [threading.Thread(target=write_a_chat, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    rows = store.list_conversations()
    assert len(rows) == 6 and all(r.message_count == 20 for r in rows)
    late = threading.Thread(target=store.list_conversations)  # a new thread's connection closes
    late.start()                                              # those of threads that have ended
    late.join()
    assert len(store._connections) <= 3  # the main thread, the late one, perhaps the flusher


# --- errors ---

def test_a_busy_database_gives_a_sentence_and_reads_still_work():
    with ChatStore(busy_timeout=0.05) as store:
        conversation, _, _ = chat(store)
        other = raw(store.path)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseLocked, match="busy"):
                store.add_message(conversation.id, "user", "blocked")
            assert store.load_conversation(conversation.id).title == "What is 2+2?"
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.add_message(conversation.id, "user", "now it works")


def test_a_full_disk_gives_a_sentence_and_keeps_what_was_saved(store):
    conversation, _, _ = chat(store)
    db = store._connection()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(DiskFull, match="is full"):
        store.add_message(conversation.id, "user", "x" * 200_000)
    assert len(store.load_conversation(conversation.id).messages) == 2


def test_a_closed_store_says_so(store):
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_conversations()


def test_a_database_from_a_newer_version_is_left_untouched():
    path = default_path()
    path.parent.mkdir(parents=True)
    with raw(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(NewerDatabase, match="newer LlamaDesk"):
        ChatStore()
    assert path.exists() and list(path.parent.glob("*damaged*")) == []


def test_a_file_that_is_not_a_database_is_set_aside_and_a_new_one_started():
    path = default_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not sqlite" * 500)
    with ChatStore() as store:
        assert store.recovered is not None
        assert store.recovered.moved_to.read_bytes().startswith(b"this is not sqlite")
        assert "kept as" in store.recovered.sentence
        chat(store)
        assert len(store.list_conversations()) == 1


def test_a_database_with_damaged_pages_is_set_aside():
    with ChatStore() as store:
        for number in range(40):
            chat(store, f"question {number} " + "words " * 200, "answer " * 200)
    with raw(default_path()) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with default_path().open("r+b") as file:
        file.seek(4096 * 3)
        file.write(b"\xde\xad\xbe\xef" * 4096)
    with ChatStore() as store:
        assert store.recovered is not None
        assert store.list_conversations() == []
        chat(store)
    assert store.recovered.moved_to.exists()


def test_a_healthy_database_is_not_reported_as_recovered(store):
    assert store.recovered is None and store.interrupted_answers == 0


def test_search_falls_back_to_plain_matching_without_fts5_and_reindexes_when_it_returns(monkeypatch):
    if not fts5_available():
        pytest.skip("this SQLite has no FTS5")
    with ChatStore() as store:
        first, _, _ = chat(store, "Tell me about owls", "Owls hunt at night.")
    monkeypatch.setattr("core.chat.store._fts5", False)
    with ChatStore() as store:
        assert not store.uses_full_text_search
        second, _, _ = chat(store, "Tell me about bats", "Bats hunt at night too.")
        assert {r.id for r in store.list_conversations("hunt")} == {first.id, second.id}
    monkeypatch.setattr("core.chat.store._fts5", True)
    with ChatStore() as store:
        assert store.uses_full_text_search
        assert {r.id for r in store.list_conversations("hunt")} == {first.id, second.id}
        assert [r.id for r in store.list_conversations("bats")] == [second.id]


@pytest.mark.parametrize("code, message, kind, words", [
    (5, "database is locked", DatabaseLocked, "busy"),
    (13, "database or disk is full", DiskFull, "is full"),
    (11, "database disk image is malformed", DatabaseCorrupt, "damaged.*Restart LlamaDesk"),
    (26, "file is not a database", DatabaseCorrupt, "damaged"),
    (1, "no such table: x", StoreError, "reported an error"),
])
def test_sqlite_errors_become_typed_errors_with_sentences(code, message, kind, words):
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    translated = _translate(error, "save the message", Path("/data/chats.sqlite3"))
    assert type(translated) is kind
    assert str(translated).startswith("Could not save the message:")
    assert re.search(words, str(translated))


# --- thinking and tool calls ---

def test_a_streamed_answer_keeps_its_thinking_and_tool_calls_apart_from_its_text(store):
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "Weather in Oslo?")
    answer = store.begin_answer(conversation.id, question.id)
    for piece in ("The user ", "wants weather."):
        store.append_reasoning(answer, piece)
    assert store.load_conversation(conversation.id).messages[-1].reasoning == "The user wants weather."
    store.append_answer(answer, "Checking.")
    calls = (ToolCall("call-1", "get_weather", '{"city": "Oslo"}'),)
    stats = MessageStats(completion_tokens=20, reasoning_tokens=12, reasoning_seconds=0.8)
    store.finish_answer(answer, stats, tool_calls=calls)
    message = store.load_conversation(conversation.id).messages[-1]
    assert (message.content, message.reasoning, message.tool_calls) == ("Checking.", "The user wants weather.", calls)
    assert (message.stats.reasoning_tokens, message.stats.answer_tokens, message.stats.reasoning_seconds) == (12, 8, 0.8)
    with raw(store.path) as db:
        row = db.execute("SELECT content, reasoning FROM messages WHERE id = ?", (answer,)).fetchone()
    assert row == ("Checking.", "The user wants weather.")


def test_thinking_is_written_in_batches_and_the_final_values_replace_the_streamed_ones(store):
    conversation = store.create_conversation()
    answer = store.begin_answer(conversation.id, None)
    store.append_reasoning(answer, "t" * FLUSH_CHARS)
    with raw(store.path) as db:
        assert db.execute("SELECT reasoning, content FROM messages WHERE id = ?", (answer,)).fetchone() == (
            "t" * FLUSH_CHARS, "")
    store.finish_answer(answer, None, text="Answer", reasoning="Final thought")
    message = store.load_conversation(conversation.id).messages[-1]
    assert (message.content, message.reasoning) == ("Answer", "Final thought")
    with pytest.raises(StoreError, match="not being written"):
        store.append_reasoning(answer, "more")


def test_search_finds_answers_by_their_text_not_their_thinking(store):
    conversation = store.create_conversation(title="Greetings")
    answer = store.begin_answer(conversation.id, None)
    store.append_reasoning(answer, "Maybe mention zeppelins.")
    store.finish_answer(answer, None, text="Hello there")
    assert [s.id for s in store.list_conversations("hello")] == [conversation.id]
    assert store.list_conversations("zeppelins") == []


def test_a_conversation_keeps_its_thinking_choice(store):
    conversation = store.create_conversation(thinking=ThinkingSetting(enabled=True, effort="low"))
    assert store.load_conversation(conversation.id).thinking == ThinkingSetting(True, "low")
    store.update_conversation(conversation.id, thinking=ThinkingSetting(enabled=False))
    assert store.load_conversation(conversation.id).thinking == ThinkingSetting(enabled=False)
    store.update_conversation(conversation.id, thinking=ThinkingSetting())
    assert store.load_conversation(conversation.id).thinking == ThinkingSetting()


def test_a_saved_conversation_keeps_every_answers_thinking_and_calls(store):
    conversation = Conversation(thinking=ThinkingSetting(effort="high"))
    conversation.add("user", "Weather?")
    conversation.add("assistant", "", reasoning="Call it.", tool_calls=(ToolCall("a", "weather", "{}"),))
    store.save_conversation(conversation)
    loaded = store.load_conversation(conversation.id)
    assert [(m.reasoning, m.tool_calls) for m in loaded.messages] == [
        ("", ()), ("Call it.", (ToolCall("a", "weather", "{}"),))]
    assert loaded.thinking == ThinkingSetting(effort="high")


def test_unreadable_tool_calls_and_thinking_choices_are_ignored_not_fatal(store):
    conversation, _, answered = chat(store)
    with raw(store.path) as db:
        db.execute("UPDATE messages SET tool_calls = '[{\"id\": 1}]' WHERE id = ?", (answered.id,))
        db.execute("UPDATE conversations SET thinking = '{\"effort\": \"max\"}' WHERE id = ?", (conversation.id,))
    loaded = store.load_conversation(conversation.id)
    assert loaded.messages[-1].tool_calls == () and loaded.messages[-1].content == "4"
    assert loaded.thinking == ThinkingSetting()
