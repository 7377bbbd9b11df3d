"""A remote engine as a user meets it (offscreen): this project's own `llamadesk-cli serve` (SmolLM2, behind a key)
is the far end, as llama-server or another LlamaDesk would be on another computer. The endpoint is added in
Settings, its model listed in the picker's Remote tab, loaded, and asked; a dead address and a wrong key read as
sentences and leave the app usable."""
from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt

from core import settings as settings_store
from core.machine.rpc import free_port
from core.settings import RemoteEndpoint, Settings
from desktop.models.picker.picker import REMOTE
from desktop.settings.settings_dialog import SettingsDialog
from tests.e2e.test_server import start_server, stop_server
from tests.gui.conftest import open_main_window

pytestmark = pytest.mark.model

KEY = "remote-ui-key"
MODEL = "SmolLM2-135M-Instruct.Q4_1"
TIMEOUT_MS = 60_000
SCREENSHOTS = os.environ.get("LLAMADESK_REMOTE_SCREENSHOTS", "")  # a folder: the tab and the chat saved there


@pytest.fixture(scope="module")
def far_end(smollm2, tmp_path_factory):
    served = start_server(tmp_path_factory.mktemp("remote-ui-home"), "--model", str(smollm2), "--ctx", "1024",
                          "--threads", "1", "--api-key", KEY)
    yield served
    if served.process.poll() is None:
        stop_server(served)


@pytest.fixture
def window(qtbot):
    window = open_main_window(qtbot, threads=1, max_tokens=24)
    yield window
    window.close()


def add_in_settings(qtbot, window, url: str, key: str = "", name: str = "") -> None:
    window.show_settings_dialog()
    dialog = window.findChildren(SettingsDialog)[-1]
    dialog.remotes.url_edit.setText(url)
    dialog.remotes.key_edit.setText(key)
    dialog.remotes.name_edit.setText(name)
    qtbot.mouseClick(dialog.remotes.add_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(dialog.settings_changed, timeout=5000):
        dialog.save_button.click()


def remote_tab(qtbot, window):
    window.show_model_picker()
    window.picker.tabs.setCurrentIndex(REMOTE)
    return window.picker.remote


def save_screenshot(widget, name: str) -> None:
    if SCREENSHOTS:
        widget.grab().save(os.path.join(SCREENSHOTS, f"remote-{name}.png"))


def test_a_remote_model_is_added_listed_loaded_and_answers(qtbot, window, far_end):
    add_in_settings(qtbot, window, far_end.url, KEY, "Office PC")
    assert settings_store.load().remote_endpoints == (RemoteEndpoint(far_end.url, KEY, "Office PC"),)

    tab = remote_tab(qtbot, window)
    qtbot.waitUntil(lambda: MODEL in tab.models(), timeout=TIMEOUT_MS)
    branch = tab.tree.topLevelItem(0)
    tab.tree.setCurrentItem(branch.child(tab.models().index(MODEL)))
    save_screenshot(window.picker, "tab")
    with qtbot.waitSignal(window.session.loaded, timeout=TIMEOUT_MS):
        qtbot.mouseClick(tab.load_button, Qt.MouseButton.LeftButton)
    host = far_end.url.removeprefix("http://")
    assert window.model_bar.title.text() == f"remote: {MODEL} at {host}"
    assert not window.model_bar.offload_button.isEnabled()
    assert window.dashboard.remote_note.text() == f"The model runs on {host}: its memory is not on this computer."
    assert window.dashboard.prediction.isHidden() and window.session.engine_pid is None

    streamed: list[str] = []
    window.session.token_arrived.connect(streamed.append)
    with qtbot.waitSignal(window.session.answer_finished, timeout=TIMEOUT_MS) as finished:
        window.chat.pane.composer.setPlainText("What is the capital of France?")
        qtbot.keyClick(window.chat.pane.composer, Qt.Key.Key_Return)
    answer = finished.args[0]
    assert len(streamed) > 1, "the remote answer arrived in one piece instead of streaming"
    assert "".join(streamed) == answer.text and answer.stats.completion_tokens > 1
    first_line = answer.text.strip().splitlines()[0]
    qtbot.waitUntil(lambda: first_line[:20] in window.chat.pane.view.toPlainText(), timeout=5000)
    assert [m.role for m in window.chat.conversation.messages] == ["user", "assistant"]
    assert window.chat.pane.send_button.isEnabled()
    save_screenshot(window, "chat")


def test_a_dead_address_and_a_wrong_key_read_as_sentences_and_the_app_stays_usable(qtbot, window, far_end):
    dead = f"http://127.0.0.1:{free_port()}"
    add_in_settings(qtbot, window, dead, name="Old box")
    add_in_settings(qtbot, window, far_end.url, "wrong-key", "Office PC")
    tab = remote_tab(qtbot, window)
    qtbot.waitUntil(lambda: len([s for s in tab.sentences() if "Asking" not in s]) == 2, timeout=TIMEOUT_MS)
    sentences = tab.sentences()
    assert any(s.startswith("Old box could not be reached (connection refused)") for s in sentences)
    assert any(s.startswith("Office PC refused the API key (HTTP 401)") for s in sentences)
    assert tab.models() == [] and not tab.load_button.isEnabled()
    save_screenshot(window.picker, "errors")

    # A model asked for with a key the server refuses: the sentence, and the app takes the next try.
    wrong = RemoteEndpoint(far_end.url, "wrong-key", "Office PC")
    with qtbot.waitSignal(window.session.load_failed, timeout=TIMEOUT_MS) as failed:
        window.use_remote(wrong, MODEL)
    assert failed.args[0].startswith("Office PC refused the API key")
    assert "refused the API key" in window.notice.text() and not window.session.busy
    with qtbot.waitSignal(window.session.load_failed, timeout=TIMEOUT_MS) as failed:
        window.use_remote(RemoteEndpoint(far_end.url, KEY), "no-such-model")
    assert "no longer serves the model 'no-such-model'" in failed.args[0]
    with qtbot.waitSignal(window.session.loaded, timeout=TIMEOUT_MS):
        window.use_remote(RemoteEndpoint(far_end.url, KEY), MODEL)
    assert window.model_bar.title.text().startswith(f"remote: {MODEL}")


def test_a_bad_address_is_refused_in_settings_with_a_sentence(qtbot):
    dialog = SettingsDialog(Settings(), physical_cores=2)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.remotes.url_edit.setText("192.168.1.30:8080")
    dialog.save_button.click()
    assert dialog.isVisible() and not dialog.remotes.error.isHidden()
    assert dialog.remotes.error.text() == ("'192.168.1.30:8080' is not an endpoint address: write it as "
                                           "http://HOST:PORT (or https://...).")
    assert dialog.remotes.endpoints() == ()
    dialog.remotes.url_edit.setText("http://192.168.1.30:8080/")
    assert dialog.remotes.add_from_fields() and dialog.remotes.error.isHidden()
    assert dialog.remotes.endpoints() == (RemoteEndpoint("http://192.168.1.30:8080"),)
    dialog.remotes.list.setCurrentRow(0)
    dialog.remotes.remove_selected()
    assert dialog.remotes.endpoints() == ()


def test_stop_ends_a_remote_answer_and_keeps_what_came(qtbot, window, far_end):
    with qtbot.waitSignal(window.session.loaded, timeout=TIMEOUT_MS):
        window.use_remote(RemoteEndpoint(far_end.url, KEY), MODEL)
    window.chat.pane.settings.max_tokens.setValue(400)
    streamed: list[str] = []
    window.session.token_arrived.connect(streamed.append)
    with qtbot.waitSignal(window.session.answer_finished, timeout=TIMEOUT_MS) as finished:
        window.chat.pane.composer.setPlainText("Write a long story about a cat.")
        qtbot.keyClick(window.chat.pane.composer, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: len(streamed) >= 5, timeout=TIMEOUT_MS)
        qtbot.mouseClick(window.chat.pane.stop_button, Qt.MouseButton.LeftButton)
    answer = finished.args[0]
    assert answer.stats.stop_reason == "cancelled" and answer.text.startswith("".join(streamed[:5]))
    qtbot.waitUntil(lambda: window.chat.pane.send_button.isEnabled(), timeout=5000)
    assert window.chat.conversation.messages[-1].content == answer.text
