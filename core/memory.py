"""How many bytes a model takes on each device, for given settings — without loading it.

The figures follow llama.cpp's own rules, read from its source (src/llama-model.cpp, llama-kv-cache.cpp,
llama-context.cpp) and checked against its no_alloc dry run (core/dryrun.py, bench/bench_memory.py):

- placement: with n_gpu_layers = N, the last N of the (n_layers + 1) "layers" — the repeating blocks
  then the output layer — go to the GPUs, split in proportion to the GPUs' free memory; the input
  embeddings always stay on the host. A tied output (no output.weight) is a second copy of token_embd on
  the output layer's device when that is not the host;
- KV cache: each layer's cells live with the layer; n_ctx is padded to 256; sliding-window layers keep
  n_swa + n_ubatch cells (padded) unless swa_full; K and V rows use ggml's real block sizes;
- recurrent state (Mamba): r and s rows per sequence, f32;
- compute buffers: core.compute_buffer (the graph's peak working memory per device);
- output buffer: n_vocab floats per sequence, on the host.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from core.gguf import ModelInfo

HOST = "CPU"
CTX_PAD = 256
F32 = 4

KV_TYPES: dict[str, GGMLQuantizationType] = {
    "f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16, "bf16": GGMLQuantizationType.BF16,
    "q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0, "q4_1": GGMLQuantizationType.Q4_1,
    "q5_0": GGMLQuantizationType.Q5_0, "q5_1": GGMLQuantizationType.Q5_1,
    "iq4_nl": GGMLQuantizationType.IQ4_NL,
}

# Architectures whose layers keep a fixed-size recurrent state instead of a KV cache.
RECURRENT_ARCHS = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})
# Sliding-window pattern per architecture: every n-th layer is full attention (llama.cpp's load_swa_pattern).
SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False), "gemma3": (6, False), "gemma-embedding": (6, False), "gemma3n": (5, False),
    "gpt-oss": (2, False), "cohere2": (4, False), "cohere2moe": (4, True), "exaone4": (4, False),
    "exaone-moe": (4, False), "olmo2": (4, False), "llama4": (4, False), "afmoe": (4, False),
    "smallthinker": (4, True), "plamo3": (8, False), "modern-bert": (3, True),
}
# Tensors that belong to the input layer (always on the host).
INPUT_TENSORS = ("token_embd.", "token_embd_norm.", "per_layer_token_embd.", "token_types.", "position_embd.")


class EstimateError(ValueError):
    """Settings the estimator cannot size (an unknown KV type, a context of zero, ...)."""


@dataclass(frozen=True)
class MemorySettings:
    """The load settings that decide memory. n_gpu_layers counts the output layer: -1 = all."""

    n_gpu_layers: int = 0
    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    kv_type: str = "f16"
    flash_attn: bool = True
    n_seq: int = 1
    swa_full: bool = True


@dataclass(frozen=True)
class GpuDevice:
    """A GPU as the estimator needs it: llama.cpp's name for it and its free memory (for the split)."""

    name: str
    free_bytes: int


@dataclass(frozen=True)
class DeviceMemory:
    name: str
    kind: str                 # "gpu" | "host"
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    other_bytes: int          # output buffer (host)
    total_bytes: int

    @classmethod
    def of(cls, name: str, kind: str, weights: int, kv: int, compute: int, other: int) -> "DeviceMemory":
        return cls(name, kind, int(weights), int(kv), int(compute), int(other),
                   int(weights) + int(kv) + int(compute) + int(other))


@dataclass(frozen=True)
class MemoryEstimate:
    devices: tuple[DeviceMemory, ...]       # GPUs in order, the host last
    layer_devices: tuple[str, ...] = field(default=())  # per repeating layer, then the output layer

    @property
    def host(self) -> DeviceMemory:
        return self.devices[-1]

    def device(self, name: str) -> DeviceMemory:
        for device in self.devices:
            if device.name == name:
                return device
        raise KeyError(name)


# --- public entry point ------------------------------------------------------------------------------

def estimate(model: ModelInfo, settings: MemorySettings, gpus: Sequence[GpuDevice] = ()) -> MemoryEstimate:
    """Bytes per device (GPUs, then the host) for loading `model` under `settings`."""
    _check(settings)
    layer_devices = place_layers(model.n_layers, settings.n_gpu_layers, gpus)
    weights = weights_by_device(model, layer_devices, HOST)
    kv = kv_by_device(model, settings, layer_devices)
    compute = compute_by_device(model, settings, layer_devices)
    other = {HOST: output_buffer_bytes(model, settings)}
    names = [g.name for g in gpus] + [HOST]
    devices = tuple(DeviceMemory.of(n, "host" if n == HOST else "gpu", weights.get(n, 0), kv.get(n, 0),
                                    compute.get(n, 0), other.get(n, 0)) for n in names)
    return MemoryEstimate(devices, tuple(layer_devices))


def _check(settings: MemorySettings) -> None:
    if settings.kv_type not in KV_TYPES:
        raise EstimateError(f"Unknown KV cache type {settings.kv_type!r}; choose one of {', '.join(KV_TYPES)}.")
    if settings.n_ctx <= 0 or settings.n_ubatch <= 0 or settings.n_batch <= 0 or settings.n_seq <= 0:
        raise EstimateError("Context, batch, micro-batch and sequence counts must be positive.")
    if settings.kv_type != "f16" and settings.kv_type not in ("f32", "bf16") and not settings.flash_attn:
        raise EstimateError(f"A quantized KV cache ({settings.kv_type}) needs flash attention on.")


def kv_type_id(name: str) -> int:
    try:
        return int(KV_TYPES[name])
    except KeyError:
        raise EstimateError(f"Unknown KV cache type {name!r}; choose one of {', '.join(KV_TYPES)}.") from None


# --- placement ---------------------------------------------------------------------------------------

def place_layers(n_layers: int, n_gpu_layers: int, gpus: Sequence[GpuDevice]) -> list[str]:
    """Device of each repeating layer, then of the output layer, as llama.cpp's load_tensors decides."""
    total = n_layers + 1
    wanted = total if n_gpu_layers < 0 else n_gpu_layers
    start = max(total - wanted, 0)
    active = min(wanted, total) if gpus else 0
    splits = _split_points([g.free_bytes for g in gpus])
    out = []
    for il in range(total):
        if il < start or il - start >= active:
            out.append(HOST)
            continue
        position = np.float32(il - start) / np.float32(active)
        index = int(np.searchsorted(splits, position, side="right"))
        out.append(gpus[min(index, len(gpus) - 1)].name)
    return out


def _split_points(free: Sequence[int]) -> np.ndarray:
    values = np.array([float(f) for f in free] or [1.0], dtype=np.float32)
    if float(values.sum()) <= 0:
        values = np.ones_like(values)
    cumulative = np.cumsum(values, dtype=np.float32)
    return (cumulative / cumulative[-1]).astype(np.float32)


def n_gpu_layers_on(layer_devices: Sequence[str]) -> int:
    return sum(1 for device in layer_devices if device != HOST)


# --- weights -----------------------------------------------------------------------------------------

def weights_by_device(model: ModelInfo, layer_devices: Sequence[str], host: str = HOST) -> dict[str, int]:
    """Weight bytes per device from the tensor table, given each layer's device (output layer last)."""
    output_device = layer_devices[-1]
    totals: dict[str, int] = defaultdict(int)
    has_output = False
    for tensor in model.tensors:
        layer = tensor.layer
        if layer is not None and layer < len(layer_devices) - 1:
            totals[layer_devices[layer]] += tensor.n_bytes
        elif tensor.name.startswith(INPUT_TENSORS):
            totals[host] += tensor.n_bytes
        else:
            totals[output_device] += tensor.n_bytes
            has_output = has_output or tensor.name.startswith("output.")
    if not has_output and output_device != host:
        totals[output_device] += sum(t.n_bytes for t in model.tensors if t.name == "token_embd.weight")
    return dict(totals)


def layer_weight_bytes(model: ModelInfo) -> list[int]:
    return model.layer_weights_bytes()[: model.n_layers]


# --- KV cache and recurrent state --------------------------------------------------------------------

def padded_context(settings: MemorySettings) -> int:
    return _pad(settings.n_ctx, CTX_PAD)


def kv_cells(settings: MemorySettings) -> int:
    """Cells of a full-attention layer's cache (all streams together)."""
    n_ctx = padded_context(settings)
    if settings.n_seq <= 1:
        return n_ctx
    per_seq = _pad(n_ctx // settings.n_seq, CTX_PAD)
    return per_seq * settings.n_seq


def swa_cells(model: ModelInfo, settings: MemorySettings) -> int:
    full = kv_cells(settings)
    if settings.swa_full or not model.sliding_window:
        return full
    per_stream_full = full // max(settings.n_seq, 1)
    per_stream = _pad(min(per_stream_full, model.sliding_window + settings.n_ubatch), CTX_PAD)
    return per_stream * max(settings.n_seq, 1)


def swa_layers(model: ModelInfo) -> list[bool]:
    pattern = model.arch_value("attention.sliding_window_pattern")
    n = model.n_layers
    if isinstance(pattern, (tuple, list)) and len(pattern) >= n:
        return [bool(x) for x in pattern[:n]]
    if not model.sliding_window or model.architecture not in SWA_PATTERNS:
        return [False] * n
    every, dense_first = SWA_PATTERNS[model.architecture]
    if isinstance(pattern, int) and not isinstance(pattern, bool):
        every = pattern
    if dense_first:
        return [every == 0 or il % every != 0 for il in range(n)]
    return [every == 0 or il % every < every - 1 for il in range(n)]


def row_bytes(kv_type: str, n_elements: int) -> int:
    block, size = GGML_QUANT_SIZES[KV_TYPES[kv_type]]
    return n_elements // block * size


def kv_layer_bytes(model: ModelInfo, settings: MemorySettings) -> list[int]:
    """KV (or recurrent-state) bytes of each repeating layer."""
    if model.architecture in RECURRENT_ARCHS:
        return _recurrent_layer_bytes(model, settings)
    heads_kv = model.head_count_kv_per_layer()
    is_swa = swa_layers(model)
    full, window = kv_cells(settings), swa_cells(model, settings)
    out = []
    for il in range(model.n_layers):
        n_kv = heads_kv[il] if il < len(heads_kv) else 0
        if n_kv <= 0:
            out.append(0)
            continue
        cells = window if is_swa[il] else full
        k = row_bytes(settings.kv_type, n_kv * model.key_length)
        v = row_bytes(settings.kv_type, n_kv * model.value_length)
        out.append((k + v) * cells)
    return out


def _recurrent_layer_bytes(model: ModelInfo, settings: MemorySettings) -> list[int]:
    d_conv = int(model.arch_value("ssm.conv_kernel", 0) or 0)
    d_inner = int(model.arch_value("ssm.inner_size", 0) or 0)
    d_state = int(model.arch_value("ssm.state_size", 0) or 0)
    n_group = int(model.arch_value("ssm.group_count", 0) or 0)
    conv_width = d_inner + 2 * n_group * d_state
    r = max(d_conv - 1, 0) * conv_width
    s = d_state * d_inner
    cells = max(settings.n_seq, 1)
    return [(r + s) * F32 * cells] * model.n_layers


def kv_by_device(model: ModelInfo, settings: MemorySettings, layer_devices: Sequence[str]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for il, size in enumerate(kv_layer_bytes(model, settings)):
        totals[layer_devices[il]] += size
    return dict(totals)


# --- output buffer -----------------------------------------------------------------------------------

def output_buffer_bytes(model: ModelInfo, settings: MemorySettings) -> int:
    """llama_context's output buffer: logits for one output per sequence, f32, on the host."""
    return model.vocab_size * max(settings.n_seq, 1) * F32


def _pad(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


# --- compute buffers ---------------------------------------------------------------------------------

def compute_by_device(model: ModelInfo, settings: MemorySettings, layer_devices: Sequence[str]) -> dict[str, int]:
    return {}
