"""The Server panel: the switch starts and stops a real server, the URL is shown and copied, the LAN switch warns
and makes a key, a key is then required, and a port already taken is reported with the switch back off."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from desktop.server.server_panel import LAN_WARNING, ServerPanel
from tests.gui.conftest import open_main_window


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, key: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def panel(qtbot):
    shown = ServerPanel()
    qtbot.addWidget(shown)
    yield shown
    shown.control.stop_and_wait()


def switch_on(qtbot, panel: ServerPanel) -> str:
    with qtbot.waitSignal(panel.control.started, timeout=30000):
        panel.switch.setChecked(True)
    return panel.url.text()


def test_the_switch_starts_a_server_whose_url_is_shown_and_copied(qtbot, panel, qapp):
    port = free_port()
    panel.port.setValue(port)
    url = switch_on(qtbot, panel)
    assert url == f"http://127.0.0.1:{port}/v1"
    assert not panel.port.isEnabled() and not panel.lan.isEnabled()
    assert get(url.removesuffix("/v1") + "/health") == (200, get(url.removesuffix("/v1") + "/health")[1])
    assert get(url + "/models")[0] == 200
    panel.copy.click()
    assert qapp.clipboard().text() == url
    with qtbot.waitSignal(panel.control.stopped, timeout=30000):
        panel.switch.setChecked(False)
    assert panel.url.text() == "" and panel.port.isEnabled()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/models", timeout=5)


def test_the_lan_switch_warns_and_makes_a_key(panel):
    assert panel.warning.isHidden()
    panel.lan.setChecked(True)
    assert not panel.warning.isHidden() and panel.warning.text() == LAN_WARNING
    assert len(panel.key.text()) >= 16
    assert panel.config().host == "0.0.0.0" and panel.config().api_key == panel.key.text()
    panel.lan.setChecked(False)
    assert panel.warning.isHidden() and panel.config().host == "127.0.0.1"


def test_a_key_is_required_once_given(qtbot, panel):
    panel.port.setValue(free_port())
    panel.key.setText("panel-key")
    url = switch_on(qtbot, panel)
    assert get(url + "/models")[0] == 401
    assert get(url + "/models", "panel-key")[0] == 200


def test_a_port_in_use_is_reported_and_the_switch_goes_back_off(qtbot, panel):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        panel.port.setValue(taken.getsockname()[1])
        with qtbot.waitSignal(panel.control.failed, timeout=30000):
            panel.switch.setChecked(True)
    assert not panel.switch.isChecked() and panel.port.isEnabled()
    assert "could not listen" in panel.status.text()


@pytest.mark.model
def test_the_server_answers_with_the_model_open_in_the_window(qtbot, smollm2, tmp_path):
    import openai
    import psutil

    from tests.fixtures.tiny_gguf import write_tiny_model

    window = open_main_window(qtbot, threads=2)
    try:
        with qtbot.waitSignal(window.session.loaded, timeout=60_000):
            window.open_model(str(smollm2))
        engine_pid = window.session.engine_pid
        window.show_server_panel()
        panel = window.server_panel
        panel.port.setValue(free_port())
        url = switch_on(qtbot, panel)
        assert "model open in this window" in panel.status.text()
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)

        assert smollm2.stem in {model.id for model in client.models.list()}
        answer = client.chat.completions.create(model=smollm2.stem, max_tokens=8,
                                                messages=[{"role": "user", "content": "Say hello."}])
        assert answer.choices[0].message.content
        engines = [p.pid for p in psutil.Process().children(recursive=True) if _runs_llama_cpp(p)]
        assert engines == [engine_pid], "the server started an engine of its own"

        other = write_tiny_model(tmp_path / "other.gguf")
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=str(other), max_tokens=4,
                                           messages=[{"role": "user", "content": "hi"}])
        assert refused.value.body["code"] == "model_not_loaded"
        assert smollm2.name in refused.value.body["message"]
        qtbot.waitUntil(lambda: "200" in panel.log.toPlainText(), timeout=5000)
        assert window.session.engine_pid == engine_pid and window.session.model is not None
    finally:
        window.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/models", timeout=5)      # closing the window stopped its server


def _runs_llama_cpp(process) -> bool:
    try:
        return any("libllama" in Path(mapped.path).name for mapped in process.memory_maps())
    except Exception:  # noqa: BLE001 - a process that just ended
        return False
