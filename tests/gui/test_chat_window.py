"""The main window as a user drives it (offscreen): open a model, chat, recover from bad files.
(Stopping an answer is the chat workspace's: tests/gui/test_chat_workspace.py.)"""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from core.settings import Settings
from desktop.main_window import MainWindow
from tests.gui.conftest import open_main_window

LOAD_TIMEOUT_MS = 60_000
SHORT_ANSWER_TOKENS = 48


@pytest.fixture
def window(qtbot):
    window = open_main_window(qtbot, threads=2, max_tokens=SHORT_ANSWER_TOKENS)
    yield window
    window.close()


def load(qtbot, window, path) -> None:
    with qtbot.waitSignal(window.session.loaded, timeout=LOAD_TIMEOUT_MS):
        window.open_model(str(path))


def send(qtbot, window, text: str) -> None:
    composer = window.chat.pane.composer
    composer.setPlainText(text)
    qtbot.keyClick(composer, Qt.Key.Key_Return)


@pytest.mark.model
def test_a_message_gets_a_streamed_reply(qtbot, window, smollm2):
    load(qtbot, window, smollm2)
    assert "SmolLM2" in window.model_bar.title.text()
    assert "layers on GPU" in window.model_bar.details.text()
    streamed: list[str] = []
    window.session.token_arrived.connect(streamed.append)
    with qtbot.waitSignal(window.session.answer_finished, timeout=LOAD_TIMEOUT_MS) as finished:
        send(qtbot, window, "What is the capital of France?")
    answer = finished.args[0]
    assert len(streamed) > 1, "the reply arrived in one piece instead of streaming"
    assert "".join(streamed) == answer.text
    first_line = answer.text.strip().splitlines()[0]
    qtbot.waitUntil(lambda: first_line[:20] in window.chat.pane.view.toPlainText(), timeout=5000)
    assert [m.role for m in window.chat.conversation.messages] == ["user", "assistant"]
    assert "tok/s" in window.memory.speed_label.text()
    assert window.chat.pane.send_button.isEnabled() and not window.chat.pane.stop_button.isEnabled()


@pytest.mark.model
def test_a_one_token_answer_shows_its_length_not_a_speed(qtbot, window, smollm2):
    load(qtbot, window, smollm2)
    window.chat.pane.settings.max_tokens.setValue(1)
    with qtbot.waitSignal(window.session.answer_finished, timeout=LOAD_TIMEOUT_MS) as finished:
        send(qtbot, window, "Say yes.")
    assert finished.args[0].stats.completion_tokens == 1
    assert window.memory.speed_label.text() == "Last answer 1 token", "one token has no speed to show"


@pytest.mark.model
def test_bad_files_show_a_clear_message_and_the_app_stays_usable(qtbot, window, smollm2, tmp_path):
    not_gguf = tmp_path / "recipe.gguf"
    not_gguf.write_text("flour, water, salt")
    truncated = tmp_path / "half.gguf"
    truncated.write_bytes(smollm2.read_bytes()[:5_000_000])
    for path in (tmp_path / "missing.gguf", not_gguf, truncated):
        window.notice.hide()
        with qtbot.waitSignal(window.model_open_failed, timeout=10_000):
            window.open_model(str(path))
        message = window.notice.text()
        assert path.name in message, message
        assert window.model_bar.open_button.isEnabled()
    load(qtbot, window, smollm2)
    with qtbot.waitSignal(window.session.answer_finished, timeout=LOAD_TIMEOUT_MS):
        send(qtbot, window, "Hello!")


@pytest.mark.model
def test_a_killed_engine_is_reloaded_and_the_partial_answer_kept(qtbot, window, smollm2):
    import os
    import signal

    load(qtbot, window, smollm2)
    window.chat.pane.settings.max_tokens.setValue(2000)
    streamed: list[str] = []
    window.session.token_arrived.connect(streamed.append)
    send(qtbot, window, "Tell me a long story about a lighthouse keeper.")
    qtbot.waitUntil(lambda: len(streamed) >= 5, timeout=LOAD_TIMEOUT_MS)
    with qtbot.waitSignal(window.session.loaded, timeout=LOAD_TIMEOUT_MS):
        os.kill(window.session.engine_pid, signal.SIGKILL)
    partial = "".join(streamed)
    kept = window.chat.conversation.messages[-1]
    assert kept.role == "assistant" and kept.stopped_early
    assert kept.content and partial.startswith(kept.content[:10])
    qtbot.waitUntil(lambda: window.chat.pane.send_button.isEnabled(), timeout=5000)


def test_the_memory_strip_refreshes_without_a_model(qtbot, window):
    qtbot.waitUntil(lambda: window.memory.ram_label.text().startswith("RAM ") and "/" in
                    window.memory.ram_label.text(), timeout=5000)
    assert "App" in window.memory.app_label.text()
    assert window.memory.engine_label.text() == "Engine not running"
    assert not window.chat.pane.send_button.isEnabled()


def test_window_layout_is_restored_after_a_restart(qtbot):
    from core import settings as store

    first = MainWindow(Settings())
    qtbot.addWidget(first)
    first.show()
    qtbot.waitUntil(lambda: first.chat is not None, timeout=10_000)
    first.resize(900, 560)  # smaller than the default size, inside the offscreen screen
    first.dashboard.hide()
    closed_size = (first.size().width(), first.size().height())
    first.close()
    saved = store.load()
    second = MainWindow(saved)
    qtbot.addWidget(second)
    second.show()
    assert closed_size[1] == 560
    # The offscreen screen is 800 px wide, so restoring clamps the width; the height is restored as left.
    assert second.size().height() == closed_size[1]
    assert not second.dashboard.isVisible()
    second.close()


@pytest.mark.model
def test_the_offload_dialog_choice_reloads_the_model_with_it(qtbot, window, smollm2):
    from core.fit.choice import OffloadChoice
    from desktop.models.offload_panel import OffloadDialog

    load(qtbot, window, smollm2)
    assert window.model_bar.offload_button.isEnabled()
    window.model_bar.offload_button.click()
    qtbot.waitUntil(lambda: window.findChild(OffloadDialog) is not None
                    and window.findChild(OffloadDialog).isVisible(), timeout=10_000)
    dialog = window.findChild(OffloadDialog)
    with qtbot.waitSignal(window.session.loaded, timeout=LOAD_TIMEOUT_MS) as reloaded:
        dialog.apply_requested.emit(OffloadChoice(gpu_layers=None, context=2048, kv_type="q8_0", flash_attn=True))
    assert reloaded.args[0].n_ctx == 2048
    assert reloaded.args[0].settings.kv_type == "q8_0"
    assert window.settings.context_length == 2048 and window.settings.kv_type == "q8_0"
    assert "2,048 context" in window.model_bar.details.text()


def test_with_no_model_at_all_the_picker_opens_on_what_fits(qtbot, window, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network in tests: the catalog is read as shipped
    window.open_initial_model()
    qtbot.waitUntil(lambda: window._picker_dialog is not None and window._picker_dialog.isVisible(), timeout=10_000)
    assert window.picker.isVisible()
    assert window.picker.tabs.currentWidget() is window.picker.recommended
    assert window.picker.fits_only.isChecked()
    window._picker_dialog.hide()


def test_ctrl_k_opens_the_model_picker(qtbot, window, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    qtbot.keyClick(window, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window._picker_dialog is not None and window._picker_dialog.isVisible(), timeout=10_000)
    window._picker_dialog.hide()
