"""The engine with a tiny random-weight model that has no chat template."""
from __future__ import annotations

import pytest

from core.engine.client import EngineClient
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings, TokenText
from tests.fixtures.tiny_gguf import write_tiny_model

QUESTION = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi there"}]


@pytest.fixture(scope="module")
def untemplated_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "no-template.gguf", chat_template=None, seed=3)


@pytest.fixture(scope="module")
def engine(untemplated_model, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAMADESK_HOME", str(tmp_path_factory.mktemp("engine-home")))
        client = EngineClient()
        client.load(LoadSettings(str(untemplated_model), n_ctx=512))
        yield client
        client.close()


def test_a_model_without_a_chat_template_gets_chatml(engine):
    assert engine.loaded.chat_template_source == "fallback (ChatML)"
    events = list(engine.chat(QUESTION, SamplingSettings(temperature=1.0, seed=1, max_tokens=24)))
    finished = events[-1]
    assert isinstance(finished, AnswerFinished)
    assert finished.stats.prompt == ("<|im_start|>system\nBe terse.<|im_end|>\n"
                                     "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    assert finished.stats.completion_tokens > 0
    assert "<|im_end|>" not in finished.text


def test_text_streams_from_a_byte_level_model(engine):
    events = list(engine.chat(QUESTION, SamplingSettings(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0,
                                                         seed=2, max_tokens=64)))
    streamed = "".join(event.text for event in events if isinstance(event, TokenText))
    assert streamed == events[-1].text
