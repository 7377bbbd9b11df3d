"""A remote engine: this project's own `llamadesk-cli serve` (SmolLM2, behind a key) is the far end, as llama-server,
vLLM, Ollama or another LlamaDesk would be on another computer."""
from __future__ import annotations

import pytest

from core.engine.protocol import AnswerFinished, SamplingSettings, TokenText
from core.engine.remote_client import (RemoteClient, RemoteEndpoint, RemoteModelGone, RemoteUnauthorized,
                                       RemoteUnreachable)
from core.machine.rpc import free_port
from tests.e2e.test_server import start_server, stop_server

pytestmark = pytest.mark.model

KEY = "remote-test-key"
MODEL = "SmolLM2-135M-Instruct.Q4_1"
HELLO = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def far_end(smollm2, tmp_path_factory):
    served = start_server(tmp_path_factory.mktemp("remote-home"), "--model", str(smollm2), "--ctx", "1024",
                          "--threads", "2", "--api-key", KEY)
    yield served
    if served.process.poll() is None:
        stop_server(served)


def test_the_endpoints_models_are_listed(far_end):
    assert MODEL in RemoteClient(RemoteEndpoint(far_end.url, KEY)).models()


def test_an_answer_streams_token_by_token_and_ends_with_the_servers_figures(far_end):
    client = RemoteClient(RemoteEndpoint(far_end.url, KEY), MODEL)
    events = list(client.chat(HELLO, SamplingSettings(temperature=0.0, max_tokens=24, seed=1)))
    tokens = [event.text for event in events if isinstance(event, TokenText)]
    finished = events[-1]
    assert isinstance(finished, AnswerFinished) and len(tokens) > 3
    assert finished.text == "".join(tokens) and "Paris" in finished.text
    assert finished.stats.completion_tokens == 24 or finished.stats.stop_reason == "stop"
    assert finished.stats.prompt_tokens > 5 and finished.stats.ttft_seconds > 0


def test_stop_ends_the_answer_early(far_end):
    client = RemoteClient(RemoteEndpoint(far_end.url, KEY), MODEL)
    seen = []
    for event in client.chat([{"role": "user", "content": "Write a long story about a cat."}],
                             SamplingSettings(temperature=0.0, max_tokens=400)):
        seen.append(event)
        if len(seen) == 5:
            client.stop()
    finished = seen[-1]
    assert isinstance(finished, AnswerFinished) and finished.stats.stop_reason == "cancelled"
    assert len(seen) < 50


def test_a_wrong_key_reads_as_a_sentence(far_end):
    with pytest.raises(RemoteUnauthorized, match=r"refused the API key \(HTTP 401\)"):
        RemoteClient(RemoteEndpoint(far_end.url, "wrong", name="Office PC")).models()
    with pytest.raises(RemoteUnauthorized, match="^Office PC refused"):
        list(RemoteClient(RemoteEndpoint(far_end.url, "wrong", name="Office PC"), MODEL).chat(HELLO))


def test_a_model_the_endpoint_does_not_serve_reads_as_gone(far_end):
    client = RemoteClient(RemoteEndpoint(far_end.url, KEY), "no-such-model")
    with pytest.raises(RemoteModelGone, match="no longer serves the model 'no-such-model'"):
        list(client.chat(HELLO, SamplingSettings(max_tokens=4)))


def test_an_unreachable_endpoint_reads_as_a_sentence():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteUnreachable, match=rf"^{url} could not be reached \(connection refused\): is the server"):
        RemoteClient(RemoteEndpoint(url)).models()
