"""The memory estimator: llama.cpp's placement rules, KV sizes, and agreement with its own dry run."""
from __future__ import annotations

import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from core.fit.dry_run import dry_run
from core.gguf.reader import read_model_info
from core.fit.estimate import (HOST, EstimateError, GpuDevice, MemorySettings, estimate, kv_cells, place_layers,
                         swa_cells, swa_layers)
from tests.fixtures.model_zoo import zoo_model

MiB = 1024 * 1024
GPU = GpuDevice("GPU0", 8 << 30)


def tolerance(total: int) -> float:
    return max(0.02 * total, 32 * MiB)


@pytest.fixture(scope="module")
def llama1b():
    return read_model_info(zoo_model("llama3.2-1b"))


@pytest.fixture(scope="module")
def gemma4b():
    return read_model_info(zoo_model("gemma3-4b"))


# --- placement ---------------------------------------------------------------------------------------

def test_the_last_layers_and_the_output_go_to_the_gpu():
    devices = place_layers(30, 12, [GPU])
    assert devices[:19] == [HOST] * 19
    assert devices[19:] == ["GPU0"] * 12  # 11 repeating layers + the output layer


def test_one_gpu_layer_is_the_output_layer_only():
    assert place_layers(30, 1, [GPU]) == [HOST] * 30 + ["GPU0"]


def test_minus_one_and_too_many_mean_every_layer():
    assert place_layers(30, -1, [GPU]) == ["GPU0"] * 31
    assert place_layers(30, 99, [GPU]) == ["GPU0"] * 31


def test_without_a_gpu_everything_stays_on_the_host():
    assert place_layers(30, -1, []) == [HOST] * 31


def test_two_gpus_split_in_proportion_to_free_memory():
    devices = place_layers(31, -1, [GpuDevice("A", 24 << 30), GpuDevice("B", 8 << 30)])
    assert devices.count("A") == 24 and devices.count("B") == 8
    assert devices[-1] == "B"  # the output layer goes with the last GPU


# --- weights -----------------------------------------------------------------------------------------

def test_a_tied_output_is_copied_to_the_gpu(llama1b):
    token_embd = next(t.n_bytes for t in llama1b.tensors if t.name == "token_embd.weight")
    full = estimate(llama1b, MemorySettings(n_gpu_layers=-1, n_ctx=4096), [GPU])
    assert full.host.weights_bytes == token_embd
    assert full.device("GPU0").weights_bytes == llama1b.weights_bytes()  # every tensor, plus the copy


def test_weights_add_up_on_the_host(llama1b):
    cpu = estimate(llama1b, MemorySettings(n_gpu_layers=0, n_ctx=4096))
    assert cpu.host.weights_bytes == llama1b.weights_bytes()


# --- KV cache ----------------------------------------------------------------------------------------

def test_kv_cache_uses_ggml_block_sizes(llama1b):
    f16 = estimate(llama1b, MemorySettings(n_ctx=4096, kv_type="f16")).host.kv_bytes
    q8 = estimate(llama1b, MemorySettings(n_ctx=4096, kv_type="q8_0")).host.kv_bytes
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType.Q8_0]
    assert f16 == 16 * 2 * 512 * 2 * 4096  # layers x (K+V) x (8 heads x 64) x 2 bytes x cells
    assert q8 == 16 * 2 * (512 // block * size) * 4096  # 34 bytes per block of 32


def test_context_is_padded_to_256():
    assert kv_cells(MemorySettings(n_ctx=1000)) == 1024


def test_sliding_window_layers(gemma4b):
    pattern = swa_layers(gemma4b)
    assert pattern.count(False) == 5 and pattern[5] is False and pattern[0] is True
    assert swa_cells(gemma4b, MemorySettings(n_ctx=32768, swa_full=False)) == 1024 + 512
    assert swa_cells(gemma4b, MemorySettings(n_ctx=32768)) == 32768  # swa_full is llama.cpp's default


def test_quantized_v_cache_needs_flash_attention(llama1b):
    with pytest.raises(EstimateError, match="flash attention"):
        estimate(llama1b, MemorySettings(kv_type="q4_0", flash_attn=False))


def test_unknown_kv_type_is_refused(llama1b):
    with pytest.raises(EstimateError, match="Unknown KV cache type"):
        estimate(llama1b, MemorySettings(kv_type="q3_k"))


# --- against llama.cpp -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, context, kv_type, flash", [
    ("llama3.2-1b", 8192, "f16", True),
    ("llama3.2-1b", 2048, "f16", False),
    ("qwen3-30b-a3b", 8192, "q8_0", True),
    ("gemma3-4b", 32768, "f16", True),
    ("mamba-2.8b", 8192, "f16", True),
])
def test_estimate_matches_the_dry_run_on_the_host(name, context, kv_type, flash):
    path = zoo_model(name)
    info = read_model_info(path)
    settings = MemorySettings(n_gpu_layers=0, n_ctx=context, kv_type=kv_type, flash_attn=flash)
    exact = dry_run(path, settings, model=info).host
    guess = estimate(info, settings).host
    assert guess.weights_bytes == exact.weights_bytes
    assert abs(guess.kv_bytes - exact.kv_bytes) < 0.01 * MiB * 2
    assert abs(guess.total_bytes - exact.total_bytes) <= tolerance(exact.total_bytes)


def test_smollm2_matches_the_dry_run(smollm2):
    info = read_model_info(smollm2)
    settings = MemorySettings(n_gpu_layers=0, n_ctx=8192)
    exact = dry_run(smollm2, settings, model=info).host
    guess = estimate(info, settings).host
    assert abs(guess.total_bytes - exact.total_bytes) <= tolerance(exact.total_bytes)
    assert abs(guess.compute_bytes - exact.compute_bytes) < 2 * MiB
