"""Exporting chats as Markdown and JSON, and importing JSON strictly."""
from __future__ import annotations

import json

import pytest

from core.chat.export import (FORMAT_VERSION, ChatImportError, from_json, read_json_file, to_json,
                              to_markdown)
from core.chat.conversation import Conversation, MessageStats, SamplingValues, ThinkingSetting, ToolCall
from core.chat.store import ChatStore


def branching_chat() -> Conversation:
    conversation = Conversation(system_prompt="Answer in one line.\nBe kind.", preset="Custom",
                                sampling=SamplingValues(temperature=0.4, seed=7))
    question = conversation.add("user", "Show me Python's hello world")
    conversation.add("assistant", "```python\nprint('hi')\n```", stopped_early=True)
    conversation.add("assistant", "```python\nprint('Hello, world!')\n```", parent_id=question.id,
                     stats=MessageStats(0.25, 42.0, 20, 12, "stop", 32, 4096))
    conversation.add("user", "Thanks — ünïcödé ✓")
    return conversation


def structure(conversation: Conversation) -> list[tuple]:
    """The tree with ids replaced by positions, to compare across fresh ids."""
    index = {m.id: i for i, m in enumerate(conversation.all_messages())}
    return [(m.role, m.content, m.stopped_early, m.created_at, m.stats, index.get(m.parent_id))
            for m in conversation.all_messages()]


def document(**conversation_changes) -> dict:
    data = json.loads(to_json(branching_chat()))
    data["conversation"].update(conversation_changes)
    return data


# --- Markdown ---

def test_markdown_shows_the_visible_thread_only():
    text = to_markdown(branching_chat())
    assert text.startswith("# Show me Python's hello world\n")
    assert "> Answer in one line.\n> Be kind." in text
    assert "## You" in text and "## Assistant" in text
    assert "print('Hello, world!')" in text and "print('hi')" not in text
    assert "12 tokens · 42.0 tok/s · first token 250 ms" in text
    assert "Thanks — ünïcödé ✓" in text


def test_markdown_marks_stopped_answers_and_untitled_chats():
    conversation = Conversation()
    conversation.add("assistant", "", stopped_early=True)
    text = to_markdown(conversation)
    assert text.startswith("# Untitled chat") and "*(empty)*" in text and "*stopped early*" in text


# --- JSON round trip ---

def test_json_round_trip_keeps_every_branch_and_setting():
    original = branching_chat()
    copy = from_json(to_json(original), fresh_ids=False)
    assert copy.all_messages() == original.all_messages()
    assert (copy.id, copy.title, copy.system_prompt, copy.preset, copy.sampling, copy.current_leaf_id,
            copy.created_at, copy.updated_at) == (
        original.id, original.title, original.system_prompt, original.preset, original.sampling,
        original.current_leaf_id, original.created_at, original.updated_at)


def test_import_gives_fresh_ids_with_the_same_tree():
    original = branching_chat()
    copy = from_json(to_json(original))
    assert copy.id != original.id
    assert not {m.id for m in copy.all_messages()} & {m.id for m in original.all_messages()}
    assert structure(copy) == structure(original)
    assert [m.content for m in copy.messages] == [m.content for m in original.messages]


def test_an_imported_chat_is_saved_twice_as_two_conversations():
    text = to_json(branching_chat())
    with ChatStore() as store:
        for _ in range(2):
            store.save_conversation(from_json(text))
        rows = store.list_conversations()
        assert len(rows) == 2 and all(r.message_count == 4 for r in rows)
        loaded = store.load_conversation(rows[0].id)
    assert structure(loaded) == structure(from_json(text))
    assert [m.content for m in loaded.messages][-1] == "Thanks — ünïcödé ✓"


def test_a_file_is_read_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "chat.json"
    path.write_bytes(b"\xef\xbb\xbf" + to_json(branching_chat()).encode())
    assert read_json_file(path).title == "Show me Python's hello world"


# --- bad input: always a ChatImportError naming the problem ---

def with_message_change(index: int, **changes) -> dict:
    data = document()
    data["conversation"]["messages"][index].update(changes)
    return data


def without(data: dict, *path: str) -> dict:
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


BAD_DOCUMENTS = [
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    ("{not json", "not valid JSON: .* line 1, column 2"),
    ("[1, 2]", "must hold a JSON object, not a list"),
    ("null", "not null"),
    ("[" * 100_000 + "]" * 100_000, "JSON"),
    ({"format": "other.app", "version": 1, "conversation": {}}, "not a LlamaDesk chat"),
    ({**document(), "version": FORMAT_VERSION + 1}, "newer LlamaDesk"),
    ({**document(), "version": "1"}, "version must be a whole number"),
    ({**document(), "extra": 1}, "the file has unknown field.*extra"),
    (without(document(), "conversation"), "the file lacks conversation"),
    (without(document(), "conversation", "title"), "conversation lacks title"),
    (document(title=5), "conversation.title must be text, not the number 5"),
    (document(created_at="yesterday"), "conversation.created_at must be a number"),
    (document(created_at=float("inf")), "created_at must be a number"),
    (document(messages={}), "conversation.messages must be a list, not an object"),
    (document(sampling={"temperature": 9}), r"conversation.sampling: .*temperature .*between 0 and 5"),
    (document(sampling={"warmth": 1}), r"conversation.sampling: Unknown sampling setting"),
    (document(current_leaf_id="nowhere"), "current_leaf_id names 'nowhere'"),
    (with_message_change(1, role="robot"), r"messages\[1\].role must be one of"),
    (with_message_change(2, content=None), r"messages\[2\].content must be text, not null"),
    (with_message_change(0, stopped_early="no"), r"messages\[0\].stopped_early must be true or false"),
    (with_message_change(0, stopped_early=1), r"stopped_early must be true or false, not the number 1"),
    (with_message_change(2, stats={"tokens_per_second": "fast"}), r"messages\[2\].stats: .*wrong type"),
    (with_message_change(2, stats=[1]), r"messages\[2\].stats must be an object or null"),
    (with_message_change(1, parent_id="ghost"), r"messages\[1\] answers 'ghost'"),
    (with_message_change(3, id=""), r"messages\[3\].id is empty"),
    (with_message_change(0, surprise=True), r"messages\[0\] has unknown field.*surprise"),
    (with_message_change(2, reasoning=None), r"messages\[2\].reasoning must be text, not null"),
    (with_message_change(2, tool_calls=[{"id": "a", "name": "f"}]), r"messages\[2\].tool_calls\[0\]: .*exactly"),
    (with_message_change(2, tool_calls=["f()"]), r"messages\[2\].tool_calls\[0\] must be an object"),
    (without(document(), "conversation", "messages", 0, "reasoning"), r"messages\[0\] lacks reasoning"),
    (document(thinking={"effort": "max"}), r"conversation.thinking: .*effort must be one of"),
    (document(thinking=True), r"conversation.thinking must be an object"),
]


@pytest.mark.parametrize("data, words", BAD_DOCUMENTS)
def test_bad_imports_are_refused_with_a_sentence(data, words):
    text = data if isinstance(data, (str, bytes)) else json.dumps(data)
    with pytest.raises(ChatImportError, match=words):
        from_json(text)


def test_duplicate_ids_and_children_before_parents_are_refused():
    data = document()
    messages = data["conversation"]["messages"]
    messages[1]["id"] = messages[0]["id"]
    with pytest.raises(ChatImportError, match=r"messages\[1\].id .* is used twice"):
        from_json(json.dumps(data))
    data = document()
    data["conversation"]["messages"].reverse()
    with pytest.raises(ChatImportError, match="does not come before it"):
        from_json(json.dumps(data))


def test_unreadable_and_oversized_files_are_import_errors(tmp_path, monkeypatch):
    with pytest.raises(ChatImportError, match="Could not read"):
        read_json_file(tmp_path / "missing.json")
    big = tmp_path / "big.json"
    big.write_text(to_json(branching_chat()))
    monkeypatch.setattr("core.chat.export.MAX_IMPORT_BYTES", 100)
    with pytest.raises(ChatImportError, match="a chat file is at most"):
        read_json_file(big)


def test_random_corruptions_never_escape_as_other_errors():
    text = to_json(branching_chat())
    for position in range(0, len(text), 7):
        for replacement in ('"', "}", "1", "x", ""):
            broken = text[:position] + replacement + text[position + 1:]
            try:
                from_json(broken)
            except ChatImportError:
                pass


def test_an_export_file_is_named_after_the_chat_and_written_whole(tmp_path):
    from core.chat.export import export_file_name, write_export

    conversation = Conversation(title="Plans: the trip / 2026?")
    assert export_file_name(conversation, "markdown") == "Plans the trip  2026.md"
    assert export_file_name(Conversation(title="???"), "json") == "chat.json"
    target = tmp_path / "plans.json"
    target.write_text("an older export")
    write_export(conversation, "json", target)
    assert from_json(target.read_text()).title == conversation.title
    assert [p.name for p in tmp_path.iterdir()] == ["plans.json"]


# --- thinking and tool calls ---

def thinking_chat() -> Conversation:
    conversation = Conversation(title="Weather", thinking=ThinkingSetting(enabled=True, effort="high"))
    conversation.add("user", "Weather in Oslo?")
    conversation.add("assistant", "", reasoning="They want the weather.\nCall the tool.",
                     tool_calls=(ToolCall("call-1", "get_weather", '{"city":"Oslo"}'),),
                     stats=MessageStats(completion_tokens=30, reasoning_tokens=22, reasoning_seconds=12.4))
    conversation.add("user", "In a word?")
    conversation.add("assistant", "Cold.", reasoning="One word.",
                     stats=MessageStats(completion_tokens=9, reasoning_tokens=7, tokens_per_second=20.0))
    return conversation


def test_markdown_quotes_the_thinking_apart_from_the_answer_and_shows_tool_calls():
    text = to_markdown(thinking_chat())
    assert "> **Thinking** (12 s)\n>\n> They want the weather.\n> Call the tool.\n" in text
    assert '**Tool call** `get_weather`\n\n```json\n{\n  "city": "Oslo"\n}\n```' in text
    assert "> **Thinking**\n>\n> One word.\n\nCold.\n" in text
    assert "9 tokens (7 thinking, 2 answer)" in text
    assert "*(empty)*" not in text       # an answer that only called a tool is not "empty"


def test_json_round_trip_keeps_thinking_tool_calls_and_the_thinking_choice():
    original = thinking_chat()
    data = json.loads(to_json(original))
    assert data["version"] == FORMAT_VERSION == 3
    assert data["conversation"]["messages"][1]["tool_calls"] == [
        {"id": "call-1", "name": "get_weather", "arguments": '{"city":"Oslo"}'}]
    imported = from_json(to_json(original))
    assert [(m.content, m.reasoning, m.tool_calls, m.stats) for m in imported.messages] == [
        (m.content, m.reasoning, m.tool_calls, m.stats) for m in original.messages]
    assert imported.thinking == ThinkingSetting(enabled=True, effort="high")


def test_a_version_1_file_still_imports_with_no_thinking():
    original = branching_chat()
    data = json.loads(to_json(original))
    data["version"] = 1
    del data["conversation"]["thinking"]
    for message in data["conversation"]["messages"]:
        del message["reasoning"], message["tool_calls"], message["attachments"], message["sources"]
        if message["stats"]:
            for added in ("reasoning_tokens", "reasoning_seconds", "earlier_reasoning_left_out"):
                del message["stats"][added]
    imported = from_json(json.dumps(data))
    assert structure(imported) == structure(original)
    assert imported.thinking == ThinkingSetting() and all(not m.reasoning for m in imported.all_messages())
    data["conversation"]["messages"][0]["reasoning"] = "new field in an old file"
    with pytest.raises(ChatImportError, match=r"messages\[0\] has unknown field.*reasoning"):
        from_json(json.dumps(data))


def test_an_imported_chat_with_thinking_is_stored_and_read_back(tmp_path):
    with ChatStore(tmp_path / "chats.sqlite3") as store:
        imported = from_json(to_json(thinking_chat()))
        store.save_conversation(imported)
        loaded = store.load_conversation(imported.id)
    assert [(m.reasoning, m.tool_calls) for m in loaded.messages] == [
        (m.reasoning, m.tool_calls) for m in thinking_chat().messages]
    assert loaded.thinking == thinking_chat().thinking
