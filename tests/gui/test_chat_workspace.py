"""The chat workspace as a user drives it (offscreen): a real ChatStore, and the real SmolLM2 engine where
an answer is needed (answers kept short: max_tokens <= 48)."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
from PySide6.QtCore import QUrl, Qt
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QFileDialog,
                               QLineEdit, QMessageBox, QPlainTextEdit, QTextEdit, QWidget)

from core.chat.conversation import PRESETS, Conversation
from core.engine.protocol import LoadSettings
from core.chat.store import ChatStore
from desktop.engine_session import EngineSession
from desktop.chat.workspace import ChatWorkspace

ANSWER_TIMEOUT_MS = 60_000
MAX_TOKENS = 48


# --------------------------------------------------------------------------------------------
# fixtures and helpers


def make_workspace(qtbot, session, store) -> ChatWorkspace:
    workspace = ChatWorkspace(session, store)
    qtbot.addWidget(workspace)
    workspace.resize(1000, 700)
    workspace.show()
    qtbot.waitUntil(lambda: workspace.conversation is not None and workspace.queue.idle, timeout=5000)
    return workspace


@pytest.fixture
def workspace(qtbot, session, store):
    return make_workspace(qtbot, session, store)


@pytest.fixture
def ready(qtbot, workspace, session, smollm2):
    """The workspace with SmolLM2 loaded and short answers."""
    with qtbot.waitSignal(session.loaded, timeout=ANSWER_TIMEOUT_MS):
        session.load(LoadSettings(model_path=str(smollm2), n_ctx=2048, n_threads=2))
    workspace.set_model_ready(True, "SmolLM2")
    workspace.pane.settings.max_tokens.setValue(MAX_TOKENS)
    workspace.pane.settings.flush()
    return workspace


def send(qtbot, workspace: ChatWorkspace, text: str) -> None:
    workspace.pane.composer.setPlainText(text)
    qtbot.keyClick(workspace.pane.composer, Qt.Key.Key_Return)


def ask_and_wait(qtbot, workspace: ChatWorkspace, session, text: str):
    with qtbot.waitSignal(session.answer_finished, timeout=ANSWER_TIMEOUT_MS) as finished:
        send(qtbot, workspace, text)
    settle(qtbot, workspace)
    return finished.args[0]


def click_link(workspace: ChatWorkspace, action: str, message_id: str) -> None:
    workspace.pane.view.anchorClicked.emit(QUrl(f"act:{action}/{message_id}"))


def settle(qtbot, workspace: ChatWorkspace) -> None:
    qtbot.waitUntil(lambda: workspace.queue.idle and not workspace.pane.view.rendering, timeout=5000)


def shown(workspace: ChatWorkspace) -> list[tuple[str, str]]:
    return [(view.role, view.text) for view in workspace.pane.view.views]


def seed_conversation(store: ChatStore, title: str, *turns: str) -> Conversation:
    conversation = store.create_conversation(title=title)
    for number, text in enumerate(turns):
        store.add_message(conversation.id, "user" if number % 2 == 0 else "assistant", text)
    return store.load_conversation(conversation.id)


# --------------------------------------------------------------------------------------------
# chatting with the real model


@pytest.mark.model
def test_a_message_streams_into_the_view_and_is_stored(qtbot, ready, session, store):
    rewrites = []
    real_draw = ready.pane.view._redraw_tail
    ready.pane.view._redraw_tail = lambda index, view: (rewrites.append(view), real_draw(index, view))
    tokens: list[str] = []
    session.token_arrived.connect(tokens.append)
    started = time.monotonic()
    answer = ask_and_wait(qtbot, ready, session, "What is the capital of France?")
    elapsed = time.monotonic() - started

    assert len(tokens) > 1 and answer.text.strip()
    assert shown(ready) == [("user", "What is the capital of France?"), ("assistant", answer.text)]
    footnote = ready.pane.view.views[-1].footnote
    assert "tok/s" in footnote and "first token" in footnote
    assert len(rewrites) <= elapsed * 20 + 3, "the streaming answer was re-rendered per token"
    assert ready.pane.context_bar.value() > 0 and "Context" in ready.pane.context_bar.format()
    stored = store.load_conversation(ready.conversation.id)
    assert [(m.role, m.content) for m in stored.messages] == shown(ready)
    assert stored.messages[-1].stats.completion_tokens == answer.stats.completion_tokens
    assert stored.title == "What is the capital of France?"
    assert ready.conversations.titles()[0] == "What is the capital of France?"


@pytest.mark.model
def test_the_stop_button_and_escape_end_an_answer_and_the_chat_keeps_it(qtbot, ready, session, store):
    """Both ways to stop reach the engine, and the stopped answer is shown, marked and stored; the model then
    answers the next message. (Stop's latency is the engine's, measured in bench/bench_engine.py.)"""
    ready.pane.settings.max_tokens.setValue(2000)  # only Stop can end these answers early
    ready.pane.settings.flush()
    tokens: list[str] = []
    session.token_arrived.connect(tokens.append)
    presses = {"Stop button": lambda: qtbot.mouseClick(ready.pane.stop_button, Qt.MouseButton.LeftButton),
               "Escape": lambda: qtbot.keyClick(ready.pane.composer, Qt.Key.Key_Escape)}
    for number, (how, press) in enumerate(presses.items()):
        tokens.clear()
        send(qtbot, ready, f"Write a very long story about dragon number {number + 1} who learns to bake bread.")
        qtbot.waitUntil(lambda: len(tokens) >= 2, timeout=ANSWER_TIMEOUT_MS)
        assert ready.pane.stop_button.isEnabled() and not ready.pane.send_button.isEnabled()
        with qtbot.waitSignal(session.answer_finished, timeout=ANSWER_TIMEOUT_MS) as finished:
            press()
        settle(qtbot, ready)
        answer = finished.args[0]
        assert answer.stats.stop_reason == "cancelled", how
        assert answer.text.startswith(tokens[0]), how
        shown_answer = ready.pane.view.views[-1]
        assert shown_answer.text == answer.text and shown_answer.footnote.startswith("Stopped"), how
        stored = store.load_conversation(ready.conversation.id).messages[-1]
        assert stored.stopped_early and stored.content == answer.text, how
        assert ready.pane.send_button.isEnabled() and not ready.pane.stop_button.isEnabled(), how
        assert not ready.stop_action.isEnabled(), how
    assert [role for role, _ in shown(ready)] == ["user", "assistant"] * 2


@pytest.mark.model
def test_regenerate_and_edit_keep_the_earlier_branches_reachable(qtbot, ready, session, store):
    first = ask_and_wait(qtbot, ready, session, "Name a fruit.")
    question_id, first_answer_id = (view.id for view in ready.pane.view.views)

    with qtbot.waitSignal(session.answer_finished, timeout=ANSWER_TIMEOUT_MS) as again:
        click_link(ready, "regenerate", first_answer_id)
    settle(qtbot, ready)
    second_answer = ready.pane.view.views[-1]
    assert second_answer.id != first_answer_id and second_answer.text == again.args[0].text
    assert second_answer.branch == (2, 2)

    click_link(ready, "previous", second_answer.id)
    settle(qtbot, ready)
    assert ready.pane.view.views[-1].id == first_answer_id
    assert ready.pane.view.views[-1].text == first.text and ready.pane.view.views[-1].branch == (1, 2)
    click_link(ready, "next", first_answer_id)
    settle(qtbot, ready)
    assert ready.pane.view.views[-1].id == second_answer.id

    click_link(ready, "edit", question_id)
    assert ready.pane.composer.toPlainText() == "Name a fruit." and ready.pane.edit_banner.isVisible()
    ask_and_wait(qtbot, ready, session, "Name a vegetable.")
    edited = ready.pane.view.views[0]
    assert edited.text == "Name a vegetable." and edited.branch == (2, 2) and edited.id != question_id
    assert not ready.pane.edit_banner.isVisible()

    click_link(ready, "previous", edited.id)
    settle(qtbot, ready)
    assert [v.id for v in ready.pane.view.views] == [question_id, second_answer.id]
    stored = store.load_conversation(ready.conversation.id)
    assert [m.id for m in stored.messages] == [question_id, second_answer.id], "the branch choice is saved"
    assert len(stored.all_messages()) == 5


@pytest.mark.model
def test_a_killed_engine_keeps_the_partial_answer_and_a_restarted_app_shows_it(qtbot, ready, session, store,
                                                                                 tmp_path):
    tokens: list[str] = []
    session.token_arrived.connect(tokens.append)
    notices: list[tuple[str, str]] = []
    ready.notice.connect(lambda level, sentence: notices.append((level, sentence)))
    send(qtbot, ready, "Write a long poem about the sea.")
    qtbot.waitUntil(lambda: len(tokens) >= 4, timeout=ANSWER_TIMEOUT_MS)
    with qtbot.waitSignal(session.answer_failed, timeout=10_000):
        os.kill(session.engine_pid, signal.SIGKILL)
    settle(qtbot, ready)

    partial = ready.pane.view.views[-1]
    assert partial.text.strip() and "".join(tokens).startswith(partial.text[:10])
    assert partial.footnote.startswith("Interrupted")
    assert notices and notices[-1][0] == "error" and "kept" in notices[-1][1]
    assert not ready.pane.stop_button.isEnabled()

    store.close()   # the app quits; a new one opens the same history
    reopened = ChatStore(tmp_path / "chats.sqlite3")
    try:
        restarted = make_workspace(qtbot, EngineSession(), reopened)
        settle(qtbot, restarted)
        assert shown(restarted) == [("user", "Write a long poem about the sea."), ("assistant", partial.text)]
        assert restarted.conversation.messages[-1].stopped_early
        assert restarted.pane.view.views[-1].footnote.startswith("Interrupted")
    finally:
        reopened.close()


@pytest.mark.model
def test_switching_chats_while_an_answer_streams_keeps_it_in_its_own_chat(qtbot, ready, session, store):
    tokens: list[str] = []
    answers = []  # collected from the start: the engine sends tokens in bursts, and the last burst may
    session.token_arrived.connect(tokens.append)  # arrive together with the end of the answer
    session.answer_finished.connect(answers.append)
    send(qtbot, ready, "Count from one to twenty in words.")
    qtbot.waitUntil(lambda: len(tokens) >= 2, timeout=ANSWER_TIMEOUT_MS)
    asking = ready.conversation
    qtbot.keyClick(ready.pane.composer, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: ready.conversation is not asking, timeout=5000)
    qtbot.waitUntil(lambda: bool(answers), timeout=ANSWER_TIMEOUT_MS)
    finished = answers[0]
    settle(qtbot, ready)
    assert shown(ready) == [] and "ready" in ready.pane.view.toPlainText()
    assert not ready.pane.stop_button.isEnabled()
    assert store.load_conversation(asking.id).messages[-1].content == finished.text

    ready._open(asking.id)
    qtbot.waitUntil(lambda: ready.conversation.id == asking.id, timeout=5000)
    settle(qtbot, ready)
    assert shown(ready)[-1] == ("assistant", finished.text)


def engine_went_idle(session, quiet_seconds: float = 1.0) -> bool:
    """The engine process used no CPU for quiet_seconds (what it prepares ahead gets no reply to wait for)."""
    import psutil
    worker = psutil.Process(session.engine_pid)
    used = sum(worker.cpu_times()[:2])
    time.sleep(quiet_seconds)
    return sum(worker.cpu_times()[:2]) - used < 0.01


@pytest.mark.model
def test_a_question_typed_in_an_open_chat_is_evaluated_before_it_is_sent(qtbot, session, store, smollm2):
    facts = " ".join(f"Box {n} is painted {('red', 'blue', 'green')[n % 3]}." for n in range(1, 40))
    seed_conversation(store, "Boxes", facts + " What colour is box 4?", "Box 4 is blue.")
    workspace = make_workspace(qtbot, session, store)
    with qtbot.waitSignal(session.loaded, timeout=ANSWER_TIMEOUT_MS):
        session.load(LoadSettings(model_path=str(smollm2), n_ctx=2048, n_threads=2))
    workspace.set_model_ready(True, "SmolLM2")
    workspace.pane.composer.setPlainText("And box 5?")          # typed, not yet sent
    qtbot.wait(1000)
    qtbot.waitUntil(lambda: engine_went_idle(session), timeout=ANSWER_TIMEOUT_MS)
    finished = ask_and_wait(qtbot, workspace, session, "And box 5?")
    # the chat and the typed question were evaluated while the user typed: only the one token always evaluated
    assert finished.stats.prompt_tokens - finished.stats.reused_prefix_tokens == 1
    assert finished.stats.prompt_tokens > 300


# --------------------------------------------------------------------------------------------
# conversations (no model needed)


def test_it_opens_the_most_recent_conversation_and_lists_newest_first(qtbot, session, store):
    seed_conversation(store, "Older", "hello", "hi there")
    newest = seed_conversation(store, "Newest", "what is 2+2?", "4")
    workspace = make_workspace(qtbot, session, store)
    settle(qtbot, workspace)
    assert workspace.conversation.id == newest.id
    assert workspace.conversations.titles() == ["Newest", "Older"]
    assert workspace.conversations.current_id() == newest.id
    assert shown(workspace) == [("user", "what is 2+2?"), ("assistant", "4")]


def test_an_empty_history_starts_a_new_conversation(qtbot, workspace, store):
    assert workspace.conversation is not None and not workspace.conversation.messages
    assert [s.id for s in store.list_conversations()] == [workspace.conversation.id]
    assert "Open a model" in workspace.pane.view.toPlainText()
    workspace.set_model_ready(True, "SmolLM2")
    assert "SmolLM2 is ready" in workspace.pane.view.toPlainText()


def test_a_new_chat_is_listed_under_its_title_while_the_answer_streams(qtbot, session, store, monkeypatch):
    seed_conversation(store, "Existing", "hello", "hi")
    workspace = make_workspace(qtbot, session, store)
    asked = []
    monkeypatch.setattr(session, "ask", lambda *args: asked.append(args))   # the answer never finishes
    workspace.new_conversation()
    qtbot.waitUntil(lambda: not workspace.conversation.messages and workspace.queue.idle, timeout=5000)
    new_id = workspace.conversation.id
    assert workspace.conversations.titles()[workspace.conversations.ids().index(new_id)] == "New chat"
    workspace.set_model_ready(True, "SmolLM2")
    renames = []
    workspace.conversations.rename_requested.connect(lambda *args: renames.append(args))
    send(qtbot, workspace, "Why is the sky blue?")
    qtbot.waitUntil(lambda: bool(asked), timeout=5000)
    assert workspace.answers.running
    assert workspace.pane.title.text() == "Why is the sky blue?"
    listing = workspace.conversations
    assert listing.titles()[listing.ids().index(new_id)] == "Why is the sky blue?"
    assert listing.current_id() == new_id
    assert not renames, "showing the title is not a rename"


def test_rename_delete_and_search(qtbot, session, store, monkeypatch):
    zebra = seed_conversation(store, "Animals", "Tell me about zebras", "Zebras have stripes.")
    seed_conversation(store, "Cooking", "How long to boil an egg?", "About 9 minutes.")
    workspace = make_workspace(qtbot, session, store)
    listing = workspace.conversations

    listing.list.item(listing.row_of(zebra.id)).setText("Striped horses")
    qtbot.waitUntil(lambda: "Striped horses" in listing.titles() and workspace.queue.idle, timeout=5000)
    assert store.load_conversation(zebra.id).title == "Striped horses"

    qtbot.keyClicks(listing.search, "zebra")
    qtbot.waitUntil(lambda: listing.ids() == [zebra.id], timeout=5000)
    listing.search.clear()
    qtbot.waitUntil(lambda: len(listing.ids()) == 2, timeout=5000)

    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Cancel)
    listing.list.setCurrentRow(listing.row_of(zebra.id))
    qtbot.waitUntil(lambda: workspace.conversation.id == zebra.id, timeout=5000)
    listing.delete_button.click()
    settle(qtbot, workspace)
    assert len(store.list_conversations()) == 2, "Cancel keeps the conversation"

    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Yes)
    listing.delete_button.click()
    qtbot.waitUntil(lambda: zebra.id not in listing.ids() and workspace.queue.idle, timeout=5000)
    assert [s.title for s in store.list_conversations()] == ["Cooking"]
    assert workspace.conversation.title == "Cooking"


def test_system_prompt_and_preset_are_saved_per_conversation(qtbot, session, store):
    first = seed_conversation(store, "First", "hello", "hi")
    workspace = make_workspace(qtbot, session, store)
    settings = workspace.pane.settings
    workspace.pane.settings_toggle.click()
    assert settings.isVisible()

    settings.system_prompt.setPlainText("You are a pirate.")
    settings.preset.setCurrentText("Precise")
    settings.preset.activated.emit(settings.preset.currentIndex())
    settings.flush()
    settle(qtbot, workspace)
    saved = store.load_conversation(workspace.conversation.id)
    assert saved.system_prompt == "You are a pirate." and saved.preset == "Precise"
    assert saved.sampling.temperature == PRESETS["Precise"].temperature

    settings.temperature.setValue(1.37)
    settings.flush()
    settle(qtbot, workspace)
    saved = store.load_conversation(workspace.conversation.id)
    assert saved.preset == "Custom" and saved.sampling.temperature == 1.37
    assert settings.preset.currentText() == "Custom"

    second = seed_conversation(store, "Second", "bonjour")
    workspace._open(second.id)
    qtbot.waitUntil(lambda: workspace.conversation.id == second.id, timeout=5000)
    assert settings.system_prompt.toPlainText() == "" and settings.preset.currentText() == "Balanced"
    workspace._open(first.id)
    qtbot.waitUntil(lambda: workspace.conversation.id == first.id, timeout=5000)
    assert settings.system_prompt.toPlainText() == "You are a pirate." and settings.temperature.value() == 1.37


def test_export_markdown_and_json_then_import_json(qtbot, session, store, monkeypatch, tmp_path):
    conversation = seed_conversation(store, "Export me", "Show code", "```python\nprint('hi')\n```")
    workspace = make_workspace(qtbot, session, store)
    actions = workspace.pane.files_button.menu().actions()
    for action, name in ((actions[0], "chat.md"), (actions[1], "chat.json")):
        target = tmp_path / name
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, target=target: (str(target), ""))
        action.trigger()
        qtbot.waitUntil(target.exists, timeout=5000)
    qtbot.wait(100)
    markdown = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert "# Export me" in markdown and "print('hi')" in markdown
    document = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert document["conversation"]["title"] == "Export me"

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(tmp_path / "chat.json"), ""))
    actions[2].trigger()
    qtbot.waitUntil(lambda: len(workspace.conversations.ids()) == 2, timeout=5000)
    settle(qtbot, workspace)
    assert workspace.conversation.id != conversation.id and workspace.conversation.title == "Export me"
    assert shown(workspace) == [("user", "Show code"), ("assistant", "```python\nprint('hi')\n```")]
    assert len(store.list_conversations()) == 2


def test_importing_a_bad_file_says_why(qtbot, workspace, monkeypatch, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    notices: list[tuple[str, str]] = []
    workspace.notice.connect(lambda level, sentence: notices.append((level, sentence)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(bad), ""))
    workspace.pane.import_requested.emit()
    qtbot.waitUntil(lambda: bool(notices), timeout=5000)
    assert notices[0][0] == "error" and "bad.json" in notices[0][1] and "JSON" in notices[0][1]


def test_copy_message_and_copy_code(qtbot, session, store):
    seed_conversation(store, "Code", "Show code", "Here:\n\n```python\nprint('hi')\n```\n")
    workspace = make_workspace(qtbot, session, store)
    settle(qtbot, workspace)
    answer = workspace.pane.view.views[-1]
    click_link(workspace, "copy", answer.id)
    from PySide6.QtGui import QGuiApplication
    assert QGuiApplication.clipboard().text() == answer.text
    workspace.pane.view.anchorClicked.emit(QUrl(f"act:code/{answer.id}/0"))
    assert QGuiApplication.clipboard().text() == "print('hi')"


# --------------------------------------------------------------------------------------------
# keyboard, accessibility, scale


def test_shift_enter_adds_a_line_and_ctrl_n_starts_a_new_chat(qtbot, session, store):
    seed_conversation(store, "Existing", "hello", "hi")
    workspace = make_workspace(qtbot, session, store)
    composer = workspace.pane.composer
    composer.setPlainText("first line")
    composer.moveCursor(composer.textCursor().MoveOperation.End)
    qtbot.keyClick(composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer, "second line")
    assert composer.toPlainText() == "first line\nsecond line"
    qtbot.keyClick(composer, Qt.Key.Key_Return)   # no model: nothing is sent, nothing is lost
    assert composer.toPlainText() == "first line\nsecond line"

    assert not workspace.stop_action.isEnabled(), "Esc only stops while an answer is running"
    qtbot.keyClick(composer, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: len(workspace.conversations.ids()) == 2 and not workspace.conversation.messages,
                    timeout=5000)
    assert workspace.conversations.current_id() == workspace.conversation.id
    qtbot.keyClick(composer, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, workspace)
    assert len(store.list_conversations()) == 2, "an empty chat is reused, not duplicated"


def test_every_control_has_an_accessible_name(workspace):
    workspace.pane.settings_toggle.setChecked(True)
    kinds = (QAbstractButton, QAbstractSpinBox, QComboBox, QAbstractItemView, QTextEdit, QPlainTextEdit)
    unnamed = []
    for widget in workspace.findChildren(QWidget):
        named = isinstance(widget, kinds) or (isinstance(widget, QLineEdit) and
                                               not isinstance(widget.parent(), (QAbstractSpinBox, QComboBox)))
        if named and widget.isVisibleTo(workspace) and not widget.accessibleName():
            unnamed.append(f"{type(widget).__name__} {widget.objectName()!r}")
    assert not unnamed


def test_tab_order_runs_from_the_list_to_the_composer(workspace):
    listing, pane = workspace.conversations, workspace.pane
    expected = [listing.new_button, listing.search, listing.list, listing.rename_button, listing.delete_button,
                pane.settings_toggle, pane.files_button, pane.view, pane.composer, pane.send_button,
                pane.stop_button]
    chain, widget = [], listing.new_button
    for _ in range(200):
        if widget in expected and widget not in chain:
            chain.append(widget)
        widget = widget.nextInFocusChain()
    assert chain == expected


def test_a_500_message_chat_opens_in_slices(qtbot, session, store):
    conversation = Conversation(title="Long chat")
    for number in range(250):
        conversation.add("user", f"Question {number}?")
        conversation.add("assistant", f"Answer {number}.\n\n```python\nprint({number})\n```\n")
    store.save_conversation(conversation)
    workspace = make_workspace(qtbot, session, store)
    settle(qtbot, workspace)
    assert len(workspace.pane.view.views) == 500
    assert workspace.pane.view.views[-1].text.startswith("Answer 249.")
    bar = workspace.pane.view.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()


def test_layout_state_is_saved_and_restored(qtbot, session, store, workspace):
    workspace.pane.settings_toggle.setChecked(True)
    workspace.splitter.setSizes([300, 700])
    qtbot.wait(10)
    state = workspace.save_state()
    other = make_workspace(qtbot, session, store)
    other.restore_state(state)
    qtbot.wait(10)
    assert other.pane.settings_toggle.isChecked() and other.pane.settings.isVisible()
    assert other.splitter.sizes()[0] == workspace.splitter.sizes()[0] == 300
    other.restore_state(b"not a state")   # an old or damaged state is ignored
