"""A reasoning model's answer in the chat (offscreen): its thinking streams in a "Thinking…" block above the
answer and then closes to "Thought for 12 s"; tool calls show as small call blocks; Copy copies the answer; the
thinking controls show only where the loaded model offers them; everything is stored apart.

The answers here are the engine's own event values (ReasoningText, TokenText, ToolCallMade, AnswerFinished)
delivered through the real EngineSession's signals, while the session's engine lane is held so the engine
itself (no model loaded) does not answer first."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from PySide6.QtCore import QUrl, Qt
from PySide6.QtGui import QGuiApplication

from core.chat.conversation import MessageStats, ThinkingSetting, ToolCall
from core.engine.protocol import (AnswerFinished, AnswerStats, LoadedModel, LoadSettings, ThinkingChoice,
                                  ThinkingSupport)
from core.engine.protocol import ToolCall as EngineToolCall
from desktop.chat.answer_flow import engine_thinking
from desktop.chat.chat_view import STREAM_FPS
from desktop.chat.workspace import ChatWorkspace
from desktop.tasks import Task

THOUGHT = "The user asks about Oslo. I should call the weather tool, then answer in one word."
TICK_MS = 1000 // STREAM_FPS + 30


@pytest.fixture
def workspace(qtbot, session, store):
    workspace = ChatWorkspace(session, store)
    qtbot.addWidget(workspace)
    workspace.resize(1000, 700)
    workspace.show()
    qtbot.waitUntil(lambda: workspace.conversation is not None and workspace.queue.idle, timeout=5000)
    workspace.set_model_ready(True, "Reasoner")
    return workspace


@contextmanager
def engine_lane_held():
    """Keep the engine's serial lane busy, so only the events this test delivers reach the chat."""
    release = threading.Event()
    Task(release.wait, 30).run_in_background(serial=True)
    try:
        yield
    finally:
        release.set()


def stats(**changes) -> AnswerStats:
    values = dict(prompt_tokens=40, completion_tokens=25, ttft_seconds=0.08, prompt_tokens_per_second=500.0,
                  tokens_per_second=30.0, context_used=65, context_size=4096, stop_reason="stop",
                  reused_prefix_tokens=0, dropped_messages=0, reasoning_tokens=18, reasoning_seconds=12.4)
    return AnswerStats(**{**values, **changes})


def loaded_model(support: ThinkingSupport) -> LoadedModel:
    return LoadedModel(model_path="reasoner.gguf", n_ctx=4096, n_gpu_layers=0, n_layers=2, backend="CPU",
                       load_seconds=0.1, resident_bytes=1, resident_growth_bytes=1, gpu_bytes=None,
                       chat_template_source="model", settings=LoadSettings("reasoner.gguf"), thinking=support)


def ask(qtbot, workspace: ChatWorkspace, text: str) -> str:
    """Send `text`; the id of the answer started for it (which a fast real engine may already have finished)."""
    # An earlier ask of this test may have queued a real engine request behind the held lane; once released it
    # fails (no model) and reports so: wait for that, so it cannot land on the answer started here. And the chat
    # sends only once the answer before has been put away (Return is ignored until then).
    qtbot.waitUntil(lambda: not workspace.session.busy and not workspace.answers.running, timeout=5000)
    known = {message.id for message in workspace.conversation.all_messages()}
    workspace.pane.composer.setPlainText(text)
    qtbot.keyClick(workspace.pane.composer, Qt.Key.Key_Return)

    def started() -> list:
        return [m for m in workspace.conversation.all_messages() if m.id not in known and m.role == "assistant"]

    qtbot.waitUntil(lambda: bool(started()), timeout=5000)
    return started()[0].id


def document_text(workspace: ChatWorkspace) -> str:
    return workspace.pane.view.document().toPlainText()


def settle(qtbot, workspace: ChatWorkspace) -> None:
    qtbot.waitUntil(lambda: workspace.queue.idle and not workspace.pane.view.rendering, timeout=5000)


def finish(qtbot, workspace, session, **answer) -> None:
    session.answer_finished.emit(AnswerFinished(**answer))
    qtbot.waitUntil(lambda: not workspace.answers.running, timeout=5000)
    settle(qtbot, workspace)


def click(workspace: ChatWorkspace, action: str, message_id: str) -> None:
    workspace.pane.view.anchorClicked.emit(QUrl(f"act:{action}/{message_id}"))


# --------------------------------------------------------------------------------------------
# streaming, then closed


def test_thinking_streams_open_above_the_answer_then_closes_to_thought_for(qtbot, workspace, session, store):
    view = workspace.pane.view
    with engine_lane_held():
        answer_id = ask(qtbot, workspace, "Weather in Oslo, in one word?")
        half = len(THOUGHT) // 2
        session.reasoning_arrived.emit(THOUGHT[:half])
        qtbot.waitUntil(lambda: THOUGHT[:half] in document_text(workspace), timeout=2000)
        session.reasoning_arrived.emit(THOUGHT[half:])
        qtbot.waitUntil(lambda: THOUGHT in document_text(workspace), timeout=2000)
        text = document_text(workspace)
        assert "Thinking…" in text and text.count(THOUGHT[:20]) == 1
        assert view.views[-1].text == "" and view.thinking_open(view.views[-1])

        session.token_arrived.emit("Cold")
        qtbot.waitUntil(lambda: "Thought for" in document_text(workspace), timeout=2000)
        text = document_text(workspace)
        assert THOUGHT not in text, "the thinking did not close once the answer began"
        assert text.index("Thought for") < text.index("Cold")

        finish(qtbot, workspace, session, text="Cold.", stats=stats(completion_tokens=25, reasoning_tokens=18),
               reasoning=THOUGHT)
    text = document_text(workspace)
    assert "Thought for 12 s" in text and THOUGHT not in text and "Cold." in text
    shown = view.views[-1]
    assert (shown.text, shown.reasoning) == ("Cold.", THOUGHT)
    assert "18 thinking + 7 answer tokens" in shown.footnote
    stored = store.load_conversation(workspace.conversation.id).message(answer_id)
    assert (stored.content, stored.reasoning) == ("Cold.", THOUGHT)
    assert (stored.stats.reasoning_tokens, stored.stats.reasoning_seconds) == (18, 12.4)


def test_thinking_never_reaches_the_answer_even_when_the_answer_is_empty(qtbot, workspace, session, store):
    with engine_lane_held():
        answer_id = ask(qtbot, workspace, "Think only")
        session.reasoning_arrived.emit(THOUGHT)
        finish(qtbot, workspace, session, text="", stats=stats(stop_reason="length"), reasoning=THOUGHT)
    stored = store.load_conversation(workspace.conversation.id).message(answer_id)
    assert (stored.content, stored.reasoning) == ("", THOUGHT)
    assert workspace.pane.view.message_text(answer_id) == ""
    assert workspace.conversation.engine_messages()[-1] == {"role": "user", "content": "Think only"}


# --------------------------------------------------------------------------------------------
# opening, closing, copying


@pytest.fixture
def answered(qtbot, workspace, session):
    """The workspace after one finished answer with thinking and a tool call."""
    with engine_lane_held():
        answer_id = ask(qtbot, workspace, "Weather in Oslo?")
        session.reasoning_arrived.emit(THOUGHT)
        call = EngineToolCall("call-1", "get_weather", '{"city": "Oslo", "unit": "celsius"}')
        session.tool_called.emit(call)
        session.token_arrived.emit("It is cold.")
        finish(qtbot, workspace, session, text="It is cold.", stats=stats(), reasoning=THOUGHT, tool_calls=(call,))
    return answer_id


def test_a_click_opens_and_closes_the_thinking(qtbot, workspace, answered):
    view = workspace.pane.view
    assert THOUGHT not in document_text(workspace)
    click(workspace, "thinking", answered)
    assert THOUGHT in document_text(workspace) and view.thinking_open(view.views[-1])
    click(workspace, "thinking", answered)
    assert THOUGHT not in document_text(workspace)
    assert "Thought for 12 s" in document_text(workspace)


def test_the_thinking_opens_from_the_keyboard(qtbot, workspace, answered):
    view = workspace.pane.view
    view.setFocus()
    for _ in range(12):       # Tab through the links of the conversation to the thinking link
        qtbot.keyClick(view, Qt.Key.Key_Tab)
        if view.textCursor().charFormat().anchorHref() == f"act:thinking/{answered}":
            break
    assert view.textCursor().charFormat().anchorHref() == f"act:thinking/{answered}"
    qtbot.keyClick(view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: THOUGHT in document_text(workspace), timeout=2000)


def test_copy_copies_the_answer_without_the_thinking(qtbot, workspace, answered):
    click(workspace, "thinking", answered)
    click(workspace, "copy", answered)
    assert QGuiApplication.clipboard().text() == "It is cold."


def test_a_tool_call_shows_as_a_call_block_and_is_stored(qtbot, workspace, answered, store):
    text = document_text(workspace)
    assert "Tool call  get_weather" in text and '"city": "Oslo"' in text
    assert "<tool_call>" not in text and "It is cold." in text
    stored = store.load_conversation(workspace.conversation.id).message(answered)
    assert stored.tool_calls == (ToolCall("call-1", "get_weather", '{"city": "Oslo", "unit": "celsius"}'),)
    turn = workspace.conversation.engine_messages()[-1]
    assert turn["reasoning_content"] == THOUGHT and turn["tool_calls"][0]["function"]["name"] == "get_weather"


def test_a_reopened_chat_shows_its_thinking_closed_and_opens_it(qtbot, session, store, workspace, answered):
    conversation_id = workspace.conversation.id
    workspace.new_conversation()
    qtbot.waitUntil(lambda: workspace.conversation.id != conversation_id and workspace.queue.idle, timeout=5000)
    workspace._open(conversation_id)
    qtbot.waitUntil(lambda: workspace.conversation.id == conversation_id, timeout=5000)
    settle(qtbot, workspace)
    assert "Thought for 12 s" in document_text(workspace) and THOUGHT not in document_text(workspace)
    click(workspace, "thinking", answered)
    assert THOUGHT in document_text(workspace)


def test_the_context_bar_shows_the_earlier_thinking_not_resent(qtbot, workspace, session, answered):
    with engine_lane_held():
        ask(qtbot, workspace, "And tomorrow?")
        session.reasoning_arrived.emit("Same again.")
        # The engine's rendered prompt holds the earlier answer but not its thinking: the template dropped it.
        prompt = "<|user|>Weather in Oslo?<|assistant|>It is cold.<|user|>And tomorrow?<|assistant|>"
        finish(qtbot, workspace, session, text="Colder.", stats=stats(prompt=prompt), reasoning="Same again.")
    assert workspace.conversation.messages[-1].stats.earlier_reasoning_left_out == 18
    assert "18 tokens of earlier thinking not resent" in workspace.pane.context_bar.format()


# --------------------------------------------------------------------------------------------
# thinking controls


def test_thinking_controls_show_only_what_the_loaded_model_offers(qtbot, workspace, session):
    controls = workspace.pane.thinking
    assert not controls.isVisible()                                # no model loaded
    session.loaded.emit(loaded_model(ThinkingSupport("none")))
    assert not controls.isVisible()
    session.loaded.emit(loaded_model(ThinkingSupport("think", can_toggle=True)))
    assert controls.think.isVisible() and not controls.effort.isVisible()
    session.loaded.emit(loaded_model(ThinkingSupport("harmony", efforts=("low", "medium", "high"))))
    assert controls.effort.isVisible() and not controls.think.isVisible()
    assert [controls.effort.itemText(i) for i in range(controls.effort.count())] == ["Low", "Medium", "High"]
    assert controls.effort.currentData() == "medium"
    session.load_started.emit("next.gguf")
    assert not controls.isVisible()


def test_a_thinking_choice_is_saved_with_its_conversation(qtbot, workspace, session, store):
    session.loaded.emit(loaded_model(ThinkingSupport("harmony", can_toggle=True, efforts=("low", "medium", "high"))))
    controls = workspace.pane.thinking
    first = workspace.conversation.id
    controls.effort.setCurrentIndex(controls.effort.findData("high"))
    controls.effort.activated.emit(controls.effort.currentIndex())
    qtbot.mouseClick(controls.think, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: workspace.queue.idle, timeout=5000)
    assert store.load_conversation(first).thinking == ThinkingSetting(enabled=False, effort="high")
    assert not controls.effort.isEnabled()                        # no effort to choose while thinking is off

    second = store.create_conversation(title="Other")
    workspace._open(second.id)
    qtbot.waitUntil(lambda: workspace.conversation.id == second.id, timeout=5000)
    assert controls.think.isChecked() and controls.effort.currentData() == "medium"
    workspace._open(first)
    qtbot.waitUntil(lambda: workspace.conversation.id == first, timeout=5000)
    assert not controls.think.isChecked() and controls.effort.currentData() == "high"


def test_the_request_carries_only_the_choices_the_template_offers():
    setting = ThinkingSetting(enabled=False, effort="low")
    assert engine_thinking(setting, ThinkingSupport()) == ThinkingChoice()
    assert engine_thinking(setting, ThinkingSupport("think", can_toggle=True)) == ThinkingChoice(enabled=False)
    assert engine_thinking(setting, ThinkingSupport("harmony", efforts=("low", "medium", "high"))) == \
        ThinkingChoice(effort="low")
    assert engine_thinking(ThinkingSetting(), ThinkingSupport("think", True, ("low",))) == ThinkingChoice()


def test_answer_stats_from_before_thinking_still_read(store):
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "Hi")
    store.add_message(conversation.id, "assistant", "Hello", stats=MessageStats(completion_tokens=3))
    assert store.load_conversation(conversation.id).messages[-1].stats.answer_tokens == 3


# --------------------------------------------------------------------------------------------
# the real engine: a tiny model whose template opens the thinking block unless it is switched off


SWITCHABLE_THINKING_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}"
    "{% else %}{{ '<think>\n' }}{% endif %}{% endif %}")


def test_the_real_engine_thinks_into_the_thinking_block_and_the_think_switch_stops_it(qtbot, workspace, session,
                                                                                        store, tmp_path):
    from tests.fixtures.tiny_gguf import write_tiny_model

    model = write_tiny_model(tmp_path / "thinker.gguf", chat_template=SWITCHABLE_THINKING_TEMPLATE)
    with qtbot.waitSignal(session.loaded, timeout=60_000):
        # Seeded: a random-weight model may otherwise close its thinking at the first token now and then.
        session.load(LoadSettings(model_path=str(model), n_ctx=256, n_threads=1, seed=11))
    controls = workspace.pane.thinking
    assert controls.think.isVisible() and controls.think.isChecked() and not controls.effort.isVisible()
    workspace.pane.settings.max_tokens.setValue(8)
    workspace.pane.settings.flush()

    with qtbot.waitSignal(session.answer_finished, timeout=60_000) as finished:
        ask(qtbot, workspace, "hi")
    settle(qtbot, workspace)
    thought = store.load_conversation(workspace.conversation.id).messages[-1]
    assert thought.reasoning and thought.reasoning == finished.args[0].reasoning and thought.content == ""
    assert thought.stats.reasoning_tokens == thought.stats.completion_tokens > 0
    assert "Thought for" in document_text(workspace) and thought.reasoning not in document_text(workspace)

    qtbot.mouseClick(controls.think, Qt.MouseButton.LeftButton)          # Think off
    with qtbot.waitSignal(session.answer_finished, timeout=60_000) as finished:
        ask(qtbot, workspace, "hi again")
    settle(qtbot, workspace)
    answered = store.load_conversation(workspace.conversation.id).messages[-1]
    # (a random-weight model may end its answer at once: its text can be empty, never its thinking's place)
    assert answered.content == finished.args[0].text and answered.reasoning == ""
    assert finished.args[0].stats.reasoning_tokens == 0
    assert store.load_conversation(workspace.conversation.id).thinking == ThinkingSetting(enabled=False)
