"""The server's guards and error mapping, in process (fastapi's TestClient), with no model loaded: what a client
gets for a missing key, a body too large, bad JSON, wrong types, an unknown model, and a full waiting line."""
from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from core.server.app import create_app
from core.server.config import ServerConfig, ServerConfigError
from core.server.grammar import GrammarError, forced_call, read_forced_call, response_format_grammar
from core.server.model_host import HostOptions, ModelHost
from core.server.request_queue import QueueFull, SlotQueue


@pytest.fixture
def host():
    served = ModelHost(HostOptions(idle_unload_seconds=None))
    yield served
    served.close()


def client_for(host: ModelHost, **config) -> TestClient:
    return TestClient(create_app(ServerConfig(**config), host))


def test_a_missing_or_wrong_key_is_refused_but_health_answers(host):
    client = client_for(host, api_key="k1")
    assert client.get("/v1/models").status_code == 401
    refused = client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200
    assert client.get("/health").json()["status"] == "ok"


def test_a_body_over_the_limit_is_refused_with_413(host):
    client = client_for(host, max_body_bytes=4096)
    reply = client.post("/v1/chat/completions", content=b"{" + b" " * 10_000 + b"}",
                        headers={"content-type": "application/json"})
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("body, param", [
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
])
def test_wrong_types_and_ranges_name_the_parameter(host, body, param):
    reply = client_for(host).post("/v1/chat/completions", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == param


def test_bad_json_unknown_models_unsupported_options_and_unknown_paths(host):
    client = client_for(host)
    bad = client.post("/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    unknown = client.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    several = client.post("/v1/chat/completions", json={"model": "nope", "n": 2,
                                                         "messages": [{"role": "user", "content": "x"}]})
    assert several.status_code == 400 and several.json()["error"]["param"] == "n"
    assert client.get("/v2/nothing").json()["error"]["type"] == "not_found_error"


def test_cors_is_off_unless_origins_are_listed(host):
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
    closed = client_for(host).options("/v1/models", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    opened = client_for(host, cors_origins=("http://app.example",)).options("/v1/models", headers=preflight)
    assert opened.headers["access-control-allow-origin"] == "http://app.example"


def test_a_lan_address_needs_a_key():
    with pytest.raises(ServerConfigError, match="API key"):
        ServerConfig(host="0.0.0.0").checked()
    assert ServerConfig(host="0.0.0.0", api_key="k").checked().api_key == "k"
    assert ServerConfig(host="::1").checked().host == "::1"


def test_the_waiting_line_refuses_past_its_limit_and_hands_slots_on_in_order():
    async def scenario() -> list[str]:
        queue = SlotQueue(slots=1, waiting_limit=1)
        served: list[str] = []
        await queue.acquire()

        async def wait(name: str) -> None:
            await queue.acquire()
            served.append(name)

        first = asyncio.create_task(wait("first"))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await queue.acquire()
        queue.release()
        await first
        queue.release()
        return served

    assert asyncio.run(scenario()) == ["first"]


def test_a_waiter_that_leaves_does_not_keep_the_slot():
    async def scenario() -> int:
        queue = SlotQueue(slots=1, waiting_limit=4)
        await queue.acquire()
        leaving = asyncio.create_task(queue.acquire())
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        queue.release()
        await asyncio.wait_for(queue.acquire(), 5)      # the slot came back, not to the one who left
        return queue.busy

    assert asyncio.run(scenario()) == 1


def test_grammars_for_json_and_forced_calls():
    assert response_format_grammar("text", None) is None
    assert "root" in response_format_grammar("json_object", None)
    with pytest.raises(GrammarError):
        response_format_grammar("json_schema", {"type": "no-such-type"})
    named = forced_call({"get_weather": {"type": "object"}}, "get_weather")
    assert read_forced_call(named, '{"city": "Oslo"}') == ("get_weather", '{"city": "Oslo"}')
    either = forced_call({"a": None, "b": None}, None)
    assert read_forced_call(either, '{"name": "b", "arguments": {}}') == ("b", "{}")
    with pytest.raises(GrammarError):
        forced_call({"a": None}, "missing")
