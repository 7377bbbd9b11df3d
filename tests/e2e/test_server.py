"""`llamadesk-cli serve` as clients meet it: the real openai SDK against the server started as a subprocess on a
free loopback port, answering with the real SmolLM2 model."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import openai
import psutil
import pytest

from tests.fixtures.tiny_gguf import write_tiny_model

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.model

CONTEXT = 1024
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: list[str] = field(default_factory=list)

    def client(self, key: str = "none", **options) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120, **options)

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/health", timeout=30) as reply:
            return json.loads(reply.read())

    def log_lines_with(self, text: str) -> list[str]:
        return [line for line in list(self.log) if text in line]


def start_server(home: Path, *args: str) -> Server:
    env = {**os.environ, "LLAMADESK_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HOME": str(home / "hf")}
    process = subprocess.Popen([sys.executable, "-m", "core.cli", "-v", "serve", "--port", "0", *args], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = Server(process, "")
    threading.Thread(target=lambda: server.log.extend(process.stderr), daemon=True).start()
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        pytest.fail(f"the server did not start: {line!r} {''.join(server.log)}")
    server.url = line.removeprefix("listening on ").strip()
    return server


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=60)


@pytest.fixture(scope="module")
def server(smollm2, tmp_path_factory):
    served = start_server(tmp_path_factory.mktemp("serve-home"), "--model", str(smollm2), "--ctx", str(CONTEXT),
                          "--threads", "2")
    yield served
    if served.process.poll() is None:
        stop_server(served)


@pytest.fixture(scope="module")
def model_id(server) -> str:
    return "SmolLM2-135M-Instruct.Q4_1"


def ask(server: Server, model_id: str, text: str, **options):
    return server.client().chat.completions.create(model=model_id, messages=[{"role": "user", "content": text}],
                                                   **options)


def test_models_lists_the_served_model_with_this_machines_fit_verdict(server, model_id):
    models = server.client().models.list().data
    assert model_id in [m.id for m in models]
    served = next(m for m in models if m.id == model_id)
    assert served.fit["verdict"]                  # the planner's verdict, as the picker shows it
    assert served.loaded is True


def test_a_chat_answer_comes_whole_with_its_usage(server, model_id):
    answer = ask(server, model_id, "What is the capital of France?", max_tokens=24, seed=1, temperature=0)
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content.strip()
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert 0 < answer.usage.completion_tokens <= 24
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_a_streamed_answer_ends_with_its_usage(server, model_id):
    stream = ask(server, model_id, "Name three colours.", max_completion_tokens=16, stream=True,
                 stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and 0 < chunks[-1].usage.completion_tokens <= 16


def test_a_json_schema_answer_follows_the_schema(server, model_id):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    answer = ask(server, model_id, "Give a large city and its population as JSON.", max_tokens=80, seed=2,
                 response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    value = json.loads(answer.choices[0].message.content)
    assert set(value) == {"city", "population"}
    assert isinstance(value["city"], str) and isinstance(value["population"], int)


def test_a_json_object_answer_is_json(server, model_id):
    answer = ask(server, model_id, "Describe a cat as JSON.", max_tokens=80, seed=3,
                 response_format={"type": "json_object"})
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


def test_a_stop_string_ends_the_answer_before_it(server, model_id):
    question = "Describe the sea in one sentence."
    free = ask(server, model_id, question, max_tokens=20, seed=4, temperature=0).choices[0].message.content
    middle = len(free) // 2
    stop = free[middle:middle + 3]
    assert stop.strip(), free
    stopped = ask(server, model_id, question, max_tokens=20, seed=4, temperature=0, stop=["@@never@@", stop])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == free[:free.index(stop)]


def test_the_same_seed_gives_the_same_answer(server, model_id):
    first, second = (ask(server, model_id, "Write a line about the sea.", max_tokens=12, seed=42, temperature=0.9)
                     .choices[0].message.content for _ in range(2))
    assert first == second


def test_a_forced_tool_call_round_trip(server, model_id):
    client = server.client()
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.chat.completions.create(model=model_id, messages=messages, tools=[WEATHER_TOOL], max_tokens=80,
                                            tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    messages += [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21, "sky": "clear"}'}]
    answer = client.chat.completions.create(model=model_id, messages=messages, tools=[WEATHER_TOOL], max_tokens=30,
                                            tool_choice="none")
    assert answer.choices[0].message.content.strip()
    assert not answer.choices[0].message.tool_calls


def test_a_forced_tool_call_streams_as_a_tool_call(server, model_id):
    stream = ask(server, model_id, "What is the weather in Rome?", temperature=0, tools=[WEATHER_TOOL],
                 tool_choice="required", max_tokens=80, stream=True)
    calls = [call for chunk in stream if chunk.choices for call in chunk.choices[0].delta.tool_calls or ()]
    assert [call.function.name for call in calls] == ["get_weather"]
    assert "city" in json.loads(calls[0].function.arguments)


def test_four_clients_streaming_at_once_all_finish(server, model_id):
    results: dict[int, tuple[str, str]] = {}

    def stream(index: int) -> None:
        chunks = list(ask(server, model_id, f"Tell me fact number {index} about owls.", max_tokens=16, stream=True))
        results[index] = ("".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                          [c.choices[0].finish_reason for c in chunks if c.choices][-1])

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(results) == [0, 1, 2, 3]
    assert all(text.strip() and reason in ("stop", "length") for text, reason in results.values())


def test_a_client_that_leaves_mid_stream_stops_its_answer_and_frees_the_server(server, model_id):
    stream = ask(server, model_id, "Write a very long story about a dragon.", max_tokens=400, stream=True,
                 seed=5, temperature=0.8)
    for index, _chunk in enumerate(stream):
        if index == 3:
            break
    stream.close()
    answer = ask(server, model_id, "Say yes.", max_tokens=8)
    assert answer.choices[0].message.content is not None
    deadline = time.monotonic() + 30
    while not server.log_lines_with("cancelled") and time.monotonic() < deadline:
        time.sleep(0.1)
    cancelled = server.log_lines_with("cancelled")
    assert cancelled, "the abandoned answer was not stopped"
    generated = [int(re.search(r"\d+\+(\d+) tokens", line).group(1)) for line in cancelled]
    assert all(count < 400 for count in generated), cancelled


def raw_request(server: Server, body: bytes, *, announced: int | None = None) -> tuple[int, dict]:
    """POST a body as bytes on a plain socket, so bodies a client library would refuse can be sent."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        length = len(body) if announced is None else announced
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % length)
        try:
            connection.sendall(body)
        except OSError:
            pass                                           # the server refused before reading it all
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _length(reply):
            piece = connection.recv(65536)
            if not piece:
                break
            reply += piece
    head, _, payload = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload[:_length(reply)])


def _length(reply: bytes) -> int:
    for line in reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def test_bad_input_gets_error_objects_and_never_takes_the_server_down(server, model_id):
    status, body = raw_request(server, b'{"model": "x", "messages": [')
    assert status == 400 and body["error"]["code"] == "invalid_json"

    status, body = raw_request(server, json.dumps({"model": model_id, "messages": "hello",
                                                   "temperature": "hot"}).encode())
    assert status == 400 and body["error"]["type"] == "invalid_request_error" and body["error"]["param"]

    status, body = raw_request(server, b"x" * (1 << 20), announced=20 * 1024 * 1024)
    assert status == 413 and "larger" in body["error"]["message"]

    client = server.client()
    with pytest.raises(openai.NotFoundError) as unknown:
        ask(server, "no-such-model", "hi")
    assert unknown.value.body["code"] == "model_not_found"

    with pytest.raises(openai.BadRequestError) as huge:
        ask(server, model_id, "hi", max_tokens=10_000_000)
    assert huge.value.body["param"] == "max_tokens" and str(CONTEXT) in huge.value.body["message"]

    with pytest.raises(openai.BadRequestError) as overlong:
        ask(server, model_id, "word " * 3000, max_tokens=16)
    assert overlong.value.body["code"] == "context_length_exceeded"
    assert "tokens" in overlong.value.body["message"]

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}],
                                       tool_choice="required")

    assert ask(server, model_id, "Say hello.", max_tokens=8).choices[0].message.content is not None


def test_a_text_completion_continues_the_raw_prompt(server, model_id, smollm2):
    from llama_cpp import Llama

    prompt = "1, 2, 3, 4, 5,"
    vocab = Llama(str(smollm2), vocab_only=True, verbose=False)
    raw_tokens = len(vocab.tokenize(prompt.encode(), add_bos=vocab.metadata.get("tokenizer.ggml.add_bos_token")
                                    == "true"))
    completion = server.client().completions.create(model=model_id, prompt=prompt, max_tokens=6, temperature=0)
    assert completion.usage.prompt_tokens == raw_tokens      # the text as given: no chat turns around it
    assert completion.choices[0].text.lstrip().startswith("6")
    assert completion.usage.completion_tokens <= 6

    streamed = server.client().completions.create(model=model_id, prompt=prompt, max_tokens=6, temperature=0,
                                                  stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == completion.choices[0].text

    with pytest.raises(openai.BadRequestError) as overlong:
        server.client().completions.create(model=model_id, prompt="word " * 3000, max_tokens=8)
    assert overlong.value.body["code"] == "context_length_exceeded" and "tokens" in overlong.value.body["message"]


def test_embeddings_from_a_chat_model_are_refused_with_a_reason(server, model_id):
    with pytest.raises(openai.BadRequestError) as refused:
        server.client().embeddings.create(model=model_id, input="hello")
    assert refused.value.body["code"] == "model_not_embedding"


def test_an_embedding_model_gives_unit_vectors_and_refuses_chat(tmp_path):
    model = write_tiny_model(tmp_path / "tiny-embed.gguf", architecture="qwen3", chat_template=None,
                             pooling=gguf.PoolingType.LAST, name="tiny-embed")      # shaped as Qwen3-Embedding
    served = start_server(tmp_path / "home", "--model", str(model), "--ctx", "256", "--threads", "1")
    try:
        client = served.client()
        texts = ["the cat sat on the mat", "the cat sat on the mat", "a quite different sentence"]
        packed = client.embeddings.create(model="tiny-embed", input=texts)      # the SDK asks for base64
        assert [item.index for item in packed.data] == [0, 1, 2]
        vectors = [item.embedding for item in packed.data]
        assert len(vectors[0]) == 64                                          # the model's n_embd
        assert math.fsum(v * v for v in vectors[0]) == pytest.approx(1.0, abs=1e-4)
        assert vectors[1] == pytest.approx(vectors[0], abs=1e-5)              # the same text, the same vector
        assert vectors[2] != pytest.approx(vectors[0], abs=1e-3)
        assert packed.usage.prompt_tokens > len(texts)

        plain = client.embeddings.create(model="tiny-embed", input=texts[0], encoding_format="float")
        assert plain.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)

        with pytest.raises(openai.BadRequestError) as too_long:
            client.embeddings.create(model="tiny-embed", input="word " * 2000)
        assert too_long.value.body["code"] == "context_length_exceeded" and too_long.value.body["param"] == "input"
        assert "tokens" in too_long.value.body["message"]
        with pytest.raises(openai.BadRequestError) as chat:
            client.chat.completions.create(model="tiny-embed", messages=[{"role": "user", "content": "hi"}])
        assert chat.value.body["code"] == "model_not_chat"
        assert client.embeddings.create(model="tiny-embed", input="still answering").data
    finally:
        stop_server(served)


def test_sigterm_stops_the_server_and_its_engine_cleanly(smollm2, tmp_path):
    served = start_server(tmp_path, "--model", str(smollm2), "--ctx", "512", "--threads", "1")
    engine_workers = psutil.Process(served.process.pid).children(recursive=True)
    assert engine_workers, "the engine worker process should be running"
    assert stop_server(served) == 0
    gone, alive = psutil.wait_procs(engine_workers, timeout=10)
    assert alive == []


def test_a_library_model_loads_on_demand_behind_a_key_and_unloads_when_idle(smollm2, tmp_path):
    models = tmp_path / "data" / "models"               # LlamaDesk's own models folder under LLAMADESK_HOME
    models.mkdir(parents=True)
    (models / smollm2.name).symlink_to(smollm2)
    served = start_server(tmp_path, "--api-key", "s3cret", "--idle-unload", "1", "--ctx", "512", "--threads", "1")
    try:
        with pytest.raises(openai.AuthenticationError):
            served.client().models.list()
        client = served.client("s3cret")
        assert "SmolLM2-135M-Instruct.Q4_1" in [m.id for m in client.models.list().data]
        answer = client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1", max_tokens=8,
                                                messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content is not None
        deadline = time.monotonic() + 30
        while served.health()["model"] is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert served.health()["model"] is None
    finally:
        assert stop_server(served) == 0


def test_a_lan_address_without_a_key_is_refused(tmp_path):
    result = subprocess.run([sys.executable, "-m", "core.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "LLAMADESK_HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "--api-key" in result.stderr and result.stdout == ""
