"""The engine when things go wrong: a killed or crashing worker, files that are not models, plans that do not fit."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import gguf
import pytest

from core.engine.client import EngineClient
from core.engine.errors import EngineCrashed, EngineError, EngineLoadError, NotLoaded
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings, TokenText

pytestmark = pytest.mark.model

LONG_ANSWER = SamplingSettings(temperature=0.8, seed=5, max_tokens=1500)
QUESTION = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]


@pytest.fixture
def engine():
    client = EngineClient()
    yield client
    client.close()


def answer_until_the_worker_dies(engine: EngineClient, how: signal.Signals) -> tuple[str, EngineCrashed]:
    received = []
    with pytest.raises(EngineCrashed) as caught:
        for event in engine.chat(QUESTION, LONG_ANSWER):
            if isinstance(event, TokenText):
                received.append(event.text)
                if len(received) == 3:
                    os.kill(engine.pid, how)
    return "".join(received), caught.value


def answers(engine: EngineClient) -> str:
    finished = [event for event in engine.chat([{"role": "user", "content": "Say hello."}],
                                               SamplingSettings(temperature=0.0, max_tokens=16))
                if isinstance(event, AnswerFinished)]
    return finished[0].text


def test_kill_9_mid_answer_keeps_the_partial_answer_and_the_model_loads_again(engine, smollm2):
    engine.load(LoadSettings(str(smollm2), n_ctx=2048))
    first_pid = engine.pid
    partial, crash = answer_until_the_worker_dies(engine, signal.SIGKILL)
    assert partial and crash.partial_text.startswith(partial)
    assert crash.exit_code == -signal.SIGKILL
    assert "SIGKILL" in str(crash) and "load the model again" in str(crash)
    assert "llama" in crash.stderr_tail                  # the worker's own stderr, captured
    assert engine.loaded is None and not engine.is_alive()
    with pytest.raises(NotLoaded):
        engine.chat(QUESTION)

    engine.load(LoadSettings(str(smollm2), n_ctx=2048))
    assert engine.pid != first_pid
    assert answers(engine).strip()


def test_a_segfault_is_reported_with_the_workers_last_words(engine, smollm2):
    engine.load(LoadSettings(str(smollm2), n_ctx=2048))
    _, crash = answer_until_the_worker_dies(engine, signal.SIGSEGV)
    assert crash.exit_code == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in crash.stderr_tail   # faulthandler, inside the worker
    assert "Its last words: Fatal Python error: Segmentation fault" in str(crash)
    assert os.path.exists(crash.log_path)
    engine.load(LoadSettings(str(smollm2), n_ctx=2048))
    assert answers(engine).strip()


def test_a_missing_file_is_a_clear_load_error(engine, tmp_path):
    with pytest.raises(EngineLoadError, match="does not exist") as caught:
        engine.load(LoadSettings(str(tmp_path / "missing.gguf")))
    assert caught.value.kind == "missing"


def test_a_file_that_is_not_a_model_is_a_clear_load_error(engine, tmp_path):
    path = tmp_path / "holiday.gguf"
    path.write_bytes(b"\x89PNG\r\n" + bytes(1000))
    with pytest.raises(EngineLoadError, match="not a GGUF model file"):
        engine.load(LoadSettings(str(path)))


def test_a_truncated_model_is_reported_as_damaged_without_stepping_down(engine, smollm2, tmp_path):
    path = tmp_path / "truncated.gguf"
    path.write_bytes(smollm2.read_bytes()[:20_000_000])
    with pytest.raises(EngineLoadError, match="damaged or incomplete") as caught:
        engine.load(LoadSettings(str(path)))
    assert caught.value.kind == "corrupt" and caught.value.steps == ()


def test_a_context_too_big_for_memory_steps_down_until_it_fits(engine, smollm2):
    # 16 M tokens of f16 KV cache for SmolLM2 is 360 GiB: llama.cpp's allocation fails at once.
    progress: list[float] = []
    loaded = engine.load(LoadSettings(str(smollm2), n_ctx=16 * 1024 * 1024), on_progress=progress.append)
    assert loaded.n_ctx == 8192 == loaded.settings.n_ctx          # the model's trained context
    assert len(loaded.steps) == 1
    assert loaded.steps[0].startswith("smaller context: 16777216 -> 8192 tokens")
    assert "Not enough memory" in loaded.steps[0] and "kv cache" in loaded.steps[0]
    assert answers(engine).strip()


def test_without_step_down_the_memory_failure_is_reported(engine, smollm2):
    with pytest.raises(EngineLoadError, match="Not enough memory") as caught:
        engine.load(LoadSettings(str(smollm2), n_ctx=16 * 1024 * 1024), step_down=False)
    assert caught.value.kind == "memory"
    assert engine.loaded is None


def test_unload_during_an_answer_ends_it_cleanly(engine, smollm2):
    engine.load(LoadSettings(str(smollm2), n_ctx=2048))
    events = engine.chat(QUESTION, LONG_ANSWER)
    first = next(event for event in events if isinstance(event, TokenText))
    assert first.text
    with pytest.raises(EngineError, match="still answering"):
        next(iter(engine.chat(QUESTION, LONG_ANSWER)))
    reader_saw: list = []
    reader = threading.Thread(target=lambda: reader_saw.extend(events))
    reader.start()
    engine.unload()
    reader.join(timeout=60)  # a hang guard only
    assert not reader.is_alive()
    finished = reader_saw[-1]
    assert isinstance(finished, AnswerFinished) and finished.stats.stop_reason == "cancelled"
    assert finished.text.startswith(first.text)
    assert engine.loaded is None and engine.pid is None


def test_an_unknown_architecture_is_reported_as_unsupported(engine, tmp_path):
    path = tmp_path / "future.gguf"
    writer = gguf.GGUFWriter(path, "qwen9")
    writer.add_block_count(1)
    writer.add_context_length(512)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(EngineLoadError, match="does not support the model architecture 'qwen9'") as caught:
        engine.load(LoadSettings(str(path)))
    assert caught.value.kind == "unsupported" and caught.value.steps == ()


def test_a_quantized_kv_cache_loads_and_answers(engine, smollm2):
    loaded = engine.load(LoadSettings(str(smollm2), n_ctx=2048, kv_type="q8_0"))
    assert loaded.settings.kv_type == "q8_0" and loaded.steps == ()
    assert answers(engine).strip()


def test_an_unknown_kv_cache_type_is_refused_in_words(engine, smollm2):
    with pytest.raises(EngineLoadError, match="Unknown KV cache type 'q3_x'") as caught:
        engine.load(LoadSettings(str(smollm2), kv_type="q3_x"))
    assert caught.value.kind == "invalid"


def test_closing_while_a_frozen_worker_loads_returns_and_ends_the_worker(smollm2):
    """A worker that never answers its load (frozen here with SIGSTOP) must not hold whoever closes the
    engine: the window's close and the app's exit wait on it."""
    client = EngineClient()
    loading = threading.Thread(target=lambda: _load_ignoring_failure(client, smollm2), daemon=True)
    loading.start()
    frozen_pid = _first_worker_pid(client)             # frozen while it still imports llama.cpp
    os.kill(frozen_pid, signal.SIGSTOP)
    closing = threading.Thread(target=lambda: client.close(wait_seconds=1.0), daemon=True)
    closing.start()
    closing.join(timeout=30)
    assert not closing.is_alive(), "closing the engine waited for a load that never ends"
    loading.join(timeout=30)
    assert not loading.is_alive()
    assert client.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(frozen_pid, 0)


def _load_ignoring_failure(client: EngineClient, model) -> None:
    with contextlib.suppress(EngineLoadError):
        client.load(LoadSettings(str(model), n_ctx=2048))


def _first_worker_pid(client: EngineClient) -> int:
    deadline = time.monotonic() + 30
    while client.pid is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert client.pid is not None, "the load started no worker"
    return client.pid
