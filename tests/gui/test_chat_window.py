"""The main window as a user drives it (offscreen): open a model, chat, stop, recover from bad files."""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt

from core.engine.protocol import SamplingSettings
from core.settings import Settings
from desktop.main_window import MainWindow

LOAD_TIMEOUT_MS = 60_000


@pytest.fixture
def window(qtbot):
    window = MainWindow(Settings(threads=2))
    window.sampling = SamplingSettings(max_tokens=48, seed=7)
    qtbot.addWidget(window)
    window.show()
    yield window
    window.close()


def load(qtbot, window, path) -> None:
    with qtbot.waitSignal(window.session.loaded, timeout=LOAD_TIMEOUT_MS):
        window.open_model(str(path))


def send(qtbot, window, text: str) -> None:
    window.chat.composer.setPlainText(text)
    qtbot.keyClick(window.chat.composer, Qt.Key.Key_Return)


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
    assert answer.text.strip() and answer.text.strip() in window.chat.transcript.answer_text()
    assert [m.role for m in window.conversation.messages] == ["user", "assistant"]
    assert "tok/s" in window.memory.speed_label.text()
    assert window.chat.send_button.isEnabled() and not window.chat.stop_button.isEnabled()


@pytest.mark.model
def test_stop_ends_a_generation_within_half_a_second(qtbot, window, smollm2):
    load(qtbot, window, smollm2)
    window.sampling = SamplingSettings(max_tokens=2000, seed=7)
    streamed: list[str] = []
    window.session.token_arrived.connect(streamed.append)
    send(qtbot, window, "Write a very long story about a dragon who learns to bake bread.")
    qtbot.waitUntil(lambda: len(streamed) >= 5, timeout=LOAD_TIMEOUT_MS)
    assert window.chat.stop_button.isEnabled()
    with qtbot.waitSignal(window.session.answer_finished, timeout=2000) as finished:
        started = time.monotonic()
        qtbot.mouseClick(window.chat.stop_button, Qt.MouseButton.LeftButton)
    elapsed = time.monotonic() - started
    assert finished.args[0].stats.stop_reason == "cancelled"
    assert elapsed < 0.5, f"Stop took {elapsed:.3f} s"
    assert window.conversation.messages[-1].stopped_early
    # The model stays loaded: the next message is answered.
    window.sampling = SamplingSettings(max_tokens=24, seed=7)
    with qtbot.waitSignal(window.session.answer_finished, timeout=LOAD_TIMEOUT_MS) as again:
        send(qtbot, window, "Thanks. Now say hi.")
    assert again.args[0].text.strip()


@pytest.mark.model
def test_bad_files_show_a_clear_message_and_the_app_stays_usable(qtbot, window, smollm2, tmp_path):
    not_gguf = tmp_path / "recipe.gguf"
    not_gguf.write_text("flour, water, salt")
    truncated = tmp_path / "half.gguf"
    truncated.write_bytes(smollm2.read_bytes()[:5_000_000])
    for path in (tmp_path / "missing.gguf", not_gguf, truncated):
        window.notice.hide()
        window.open_model(str(path))
        qtbot.waitUntil(lambda: window.notice.isVisible(), timeout=10_000)
        message = window.notice.text()
        assert path.name in message, message
        assert window.model_bar.open_button.isEnabled()
    load(qtbot, window, smollm2)
    with qtbot.waitSignal(window.session.answer_finished, timeout=LOAD_TIMEOUT_MS):
        send(qtbot, window, "Hello!")


def test_the_memory_strip_refreshes_without_a_model(qtbot, window):
    qtbot.waitUntil(lambda: window.memory.ram_label.text().startswith("RAM ") and "/" in
                    window.memory.ram_label.text(), timeout=5000)
    assert "App" in window.memory.app_label.text()
    assert window.memory.engine_label.text() == "Engine not running"
    assert not window.chat.send_button.isEnabled()


@pytest.mark.model
def test_the_offload_dialog_choice_reloads_the_model_with_it(qtbot, window, smollm2):
    from core.offload_choice import OffloadChoice
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
