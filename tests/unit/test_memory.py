"""The memory estimator: llama.cpp's placement rules, KV sizes, and agreement with its own dry run."""
from __future__ import annotations

import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from core.fit.dry_run import dry_run
from core.gguf.reader import read_model_info
from core.fit.estimate import (HOST, EstimateError, GpuDevice, MemorySettings, estimate, footprint, kv_cells,
                               kv_layer_bytes, place_layers, recurrent_state_bytes, swa_cells, swa_layers)
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


# --- newer architectures: which layers own KV or a recurrent state (no llama.cpp needed) -------------
#
# The KV cache + recurrent-state totals llama.cpp's own dry run logged for these header-only stubs on the
# host (llama-cpp-python 0.3.36, flash attention on, one sequence; bench/bench_memory.py re-measures them).
# Before these rules the estimate missed the Mamba2 states (-139 MiB on Nemotron-Nano-9B-v2), counted KV on
# every Qwen3-Next layer (+2.2 GiB at 32k), on every Gemma 3n layer (+0.9 GiB) and a V cache under MLA.

DRY_RUN_KV_MIB = [
    ("granite-4.0-h-tiny", 32768, "f16", 311.37),   # Mamba2 + 4 attention layers
    ("nemotron-nano-9b-v2", 8192, "q8_0", 206.80),  # Mamba2 + 4 attention layers + MLP-only layers
    ("falcon-h1-1.5b", 8192, "f16", 264.98),        # attention and Mamba2 in every layer
    ("qwen3-next-80b-a3b", 32768, "f16", 843.38),   # gated DeltaNet, attention every 4th layer
    ("lfm2-1.2b", 32768, "q8_0", 204.16),           # short convolutions + 6 attention layers
    ("gemma3n-e4b", 32768, "f16", 1280.00),         # the last 15 layers reuse KV
    ("deepseek-v2-lite", 32768, "f16", 972.00),     # MLA: one latent K row, no V
    ("kimi-k2", 8192, "q8_0", 291.66),              # MLA with a q LoRA
    ("llama4-scout", 8192, "f16", 1536.00),         # chunked attention (full cache while swa_full)
    ("glm-4.5-air", 32768, "f16", 5888.00),         # the MTP block has no cache
]


@pytest.mark.parametrize("name, context, kv_type, recorded_mib", DRY_RUN_KV_MIB)
def test_kv_and_recurrent_state_match_the_recorded_dry_run(name, context, kv_type, recorded_mib):
    info = read_model_info(zoo_model(name))
    host = estimate(info, MemorySettings(n_ctx=context, kv_type=kv_type)).host
    assert abs(host.kv_bytes / MiB - recorded_mib) < 0.01  # the log prints two decimals


def test_a_mamba2_hybrid_keeps_state_in_its_mamba_layers_and_kv_in_its_attention_layers():
    info = read_model_info(zoo_model("nemotron-nano-9b-v2"))
    prints = footprint(info)
    assert sum(prints.recurrent) == 27 and sum(prints.owns_kv) == 4
    assert not any(r and k for r, k in zip(prints.recurrent, prints.owns_kv))  # MLP-only layers have neither
    per_layer = kv_layer_bytes(info, MemorySettings(n_ctx=4096), prints)
    state = recurrent_state_bytes(info, MemorySettings(n_ctx=4096))
    assert state == (3 * (10240 + 2 * 8 * 128) + 128 * 10240) * 4  # conv window + scan state, f32
    assert sorted(set(per_layer)) == [0, state, 2 * 8 * 128 * 2 * 4096]


def test_the_recurrent_state_does_not_grow_with_the_context():
    info = read_model_info(zoo_model("granite-4.0-h-tiny"))
    short, long = (estimate(info, MemorySettings(n_ctx=n)).host.kv_bytes for n in (4096, 8192))
    attention_only = 4 * 2 * 4 * 128 * 2 * 4096  # 4 attention layers' K+V for the extra 4096 cells
    assert long - short == attention_only


def test_falcon_h1_has_both_in_every_layer():
    prints = footprint(read_model_info(zoo_model("falcon-h1-1.5b")))
    assert all(prints.recurrent) and all(prints.owns_kv)


def test_qwen3_next_has_attention_every_fourth_layer():
    prints = footprint(read_model_info(zoo_model("qwen3-next-80b-a3b")))
    assert [il for il, kv in enumerate(prints.owns_kv) if kv] == list(range(3, 48, 4))
    assert sum(prints.recurrent) == 36


def test_gemma3n_layers_past_the_twentieth_share_kv():
    prints = footprint(read_model_info(zoo_model("gemma3n-e4b")))
    assert prints.owns_kv == (True,) * 20 + (False,) * 15


def test_mla_keeps_no_v_cache():
    info = read_model_info(zoo_model("deepseek-v2-lite"))
    kv = estimate(info, MemorySettings(n_ctx=4096)).host.kv_bytes
    assert kv == 27 * 576 * 2 * 4096  # layers x (512 latent + 64 rope) x f16 x cells


def test_mtp_blocks_are_not_loaded_and_have_no_cache():
    info = read_model_info(zoo_model("glm-4.5-air"))
    prints = footprint(info)
    assert prints.layer_weights[-1] == 0 and not prints.owns_kv[-1]
    mtp = sum(t.n_bytes for t in info.tensors if t.layer == info.n_layers - 1)
    cpu = estimate(info, MemorySettings(n_ctx=4096)).host
    assert mtp > 0 and cpu.weights_bytes == info.weights_bytes() - mtp
