"""tests/fixtures/tiny_gguf: tiny written models are valid, and llama.cpp loads and runs them."""
from __future__ import annotations

import pytest

from core.gguf.reader import read_model_info
from tests.fixtures.tiny_gguf import BOS_EOS_TOKEN, DEFAULT_CHAT_TEMPLATE, vocabulary, write_tiny_model


def test_defaults_write_a_small_llama_with_a_chat_template(tmp_path):
    path = write_tiny_model(tmp_path / "tiny.gguf")
    info = read_model_info(path)
    assert path.stat().st_size < 1024 * 1024
    assert (info.architecture, info.n_layers, info.embedding_length, info.head_count) == ("llama", 2, 64, 4)
    assert info.chat_template == DEFAULT_CHAT_TEMPLATE
    assert info.metadata["tokenizer.ggml.model"] == "gpt2"


def test_without_a_template_there_is_no_template_key(tmp_path):
    info = read_model_info(write_tiny_model(tmp_path / "plain.gguf", chat_template=None))
    assert "tokenizer.chat_template" not in info.metadata and info.chat_template is None


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    first = write_tiny_model(tmp_path / "a.gguf", seed=3).read_bytes()
    assert write_tiny_model(tmp_path / "b.gguf", seed=3).read_bytes() == first
    assert write_tiny_model(tmp_path / "c.gguf", seed=4).read_bytes() != first


def test_vocabulary_covers_every_byte_once_plus_specials():
    tokens, types = vocabulary()
    assert len(tokens) == len(set(tokens)) == len(types)
    assert tokens[-3:] == [BOS_EOS_TOKEN, "<|im_start|>", "<|im_end|>"]
    assert types[-3:] == [3, 3, 3] and set(types[:-3]) == {1}


@pytest.mark.parametrize("bad", [{"architecture": "gpt9"}, {"tensor_type": "q2_k"}, {"n_head": 5}])
def test_unsupported_options_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        write_tiny_model(tmp_path / "x.gguf", **bad)


# --- llama.cpp really runs them ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp")


@pytest.mark.parametrize("architecture, tensor_type", [("llama", "f32"), ("llama", "q8_0"), ("qwen2", "f16"),
                                                       ("qwen3", "f32")])
def test_llama_cpp_loads_and_generates(llama_cpp, tmp_path, architecture, tensor_type):
    path = write_tiny_model(tmp_path / "m.gguf", architecture=architecture, tensor_type=tensor_type, n_head_kv=2)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        result = llm("The cat", max_tokens=6, temperature=0.0)
        assert result["usage"]["completion_tokens"] > 0
        assert llm.n_ctx() == 256 and llm.n_vocab() == len(vocabulary()[0])
    finally:
        llm.close()


def test_llama_cpp_tokenises_bytes_and_chat_markers(llama_cpp, tmp_path):
    llm = llama_cpp.Llama(model_path=str(write_tiny_model(tmp_path / "m.gguf")), n_ctx=256, n_threads=1,
                          verbose=False)
    try:
        text = "héllo wörld ✓ the end"
        assert llm.detokenize(llm.tokenize(text.encode(), add_bos=False)).decode() == text
        tokens = vocabulary()[0]
        marked = llm.tokenize(b"<|im_start|>user<|im_end|>", add_bos=False, special=True)
        assert marked == [tokens.index("<|im_start|>"), tokens.index("u"), tokens.index("s"), tokens.index("er"),
                          tokens.index("<|im_end|>")]
        reply = llm.create_chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert reply["usage"]["prompt_tokens"] > 5
    finally:
        llm.close()
