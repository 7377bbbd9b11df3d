"""The Server panel: the switch starts and stops a real server, the URL is shown and copied, the LAN switch warns
and makes a key, a key is then required, and a port already taken is reported with the switch back off."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from desktop.server.server_panel import LAN_WARNING, ServerPanel


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
