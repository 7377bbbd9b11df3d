"""How many bytes a model takes on each device, for given settings — without loading it.

The figures follow llama.cpp's own rules, read from its source (src/llama-model.cpp, llama-kv-cache.cpp,
llama-context.cpp) and checked against its no_alloc dry run (core/fit/dry_run.py, bench/bench_memory.py):

- placement: with n_gpu_layers = N, the last N of the (n_layers + 1) "layers" — the repeating blocks
  then the output layer — go to the GPUs, split in proportion to the GPUs' free memory; the input
  embeddings always stay on the host. A tied output (no output.weight) is a second copy of token_embd on
  the output layer's device when that is not the host;
- KV cache: each layer's cells live with the layer; n_ctx is padded to 256; sliding-window layers keep
  n_swa + n_ubatch cells (padded) unless swa_full; K and V rows use ggml's real block sizes;
- which layers own a KV cache and which a recurrent state (src/llama-model.cpp's create_memory and each
  architecture's load_arch_hparams): hybrids split their layers (Mamba2, gated DeltaNet or short-convolution
  layers keep a state, the others a KV cache; Falcon-H1 keeps both in every layer); Gemma 3n's last layers
  reuse earlier layers' KV; MLA (DeepSeek-V2 and successors) stores one latent K row and no V; the MTP
  blocks at the end (nextn_predict_layers) are neither loaded nor given a cache unless asked for;
- recurrent state: r (convolution) and s (scan) rows per sequence, f32;
- compute buffers: the graph's peak working memory per device (see the section at the end);
- output buffer: n_vocab floats per sequence, on the host.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from gguf import GGML_QUANT_SIZES

from core.gguf.kv_types import KV_TYPES, is_quantized, needs_flash_attention
from core.gguf.reader import ModelInfo

HOST = "CPU"
CTX_PAD = 256
F32 = 4

# Architectures whose layers keep a fixed-size recurrent state instead of a KV cache.
RECURRENT_ARCHS = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})
# Hybrids whose recurrent layers are the ones with head_count_kv = 0 (nemotron_h: and feed_forward_length 0,
# its MLP-only layers have neither).
RECURRENT_WHERE_NO_KV_HEADS = frozenset({"jamba", "granitehybrid", "lfm2", "lfm2moe", "plamo2", "nemotron_h",
                                         "nemotron_h_moe"})
RECURRENT_UNLESS_FFN = frozenset({"nemotron_h", "nemotron_h_moe"})
# Hybrids with full attention every full_attention_interval-th layer (default 4), gated DeltaNet elsewhere.
RECURRENT_BETWEEN_ATTENTION = frozenset({"qwen3next", "qwen35", "qwen35moe"})
# Every layer runs attention and a Mamba2 mixer side by side: both a KV cache and a state.
ATTENTION_AND_STATE = frozenset({"falcon-h1"})
# Layers from this index on reuse the KV cache of an earlier layer (Gemma 3n: hard-coded in llama.cpp).
KV_FROM_START = {"gemma3n": 20}
# Sliding-window pattern per architecture: every n-th layer is full attention (llama.cpp's load_swa_pattern).
SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False), "gemma3": (6, False), "gemma-embedding": (6, False), "gemma3n": (5, False),
    "gpt-oss": (2, False), "cohere2": (4, False), "cohere2moe": (4, True), "exaone4": (4, False),
    "exaone-moe": (4, False), "olmo2": (4, False), "llama4": (4, False), "afmoe": (4, False),
    "smallthinker": (4, True), "plamo3": (8, False), "modern-bert": (3, True),
}
# A MoE layer's expert tensors (weights and biases), as llama.cpp's --n-cpu-moe pattern matches them.
EXPERT_TENSOR = re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps")
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
    cpu_expert_layers: int = 0       # MoE: the expert tensors of the first N layers stay on the host (--n-cpu-moe)


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

@dataclass(frozen=True)
class Footprint:
    """What the estimate needs from a model, computed once: weight bytes per place, layer flags, graph sizes."""

    n_layers: int
    layer_weights: tuple[int, ...]   # per repeating layer
    input_weights: int               # token embeddings and the like: always on the host
    output_weights: int              # output norm and head, on the output layer's device
    tied_output_bytes: int           # a tied head's copy on an offloaded output layer (0 when untied)
    is_swa: tuple[bool, ...]
    fused_qkv: bool                  # one attn_qkv projection instead of q, k, v
    heads_kv: tuple[int, ...]        # per repeating layer
    max_heads: int
    owns_kv: tuple[bool, ...]        # per repeating layer: has a KV cache of its own
    recurrent: tuple[bool, ...]      # per repeating layer: keeps a recurrent state
    expert_weights: tuple[int, ...] = ()  # per repeating layer: bytes of its expert tensors (MoE)


def footprint(model: ModelInfo, skipped: frozenset[str] | None = None) -> Footprint:
    """Sum the tensor table once: per layer, input, output, and a tied head's copy.

    `skipped`: the tensors llama.cpp leaves unloaded; None: the MTP blocks' (see mtp_layers).
    """
    layer_weights = [0] * model.n_layers
    expert_weights = [0] * model.n_layers
    input_weights = output_weights = token_embd = 0
    has_output = False
    first_mtp = model.n_layers - mtp_layers(model)
    for tensor in model.tensors:
        layer = tensor.layer
        if tensor.name in skipped if skipped is not None else (layer is not None and layer >= first_mtp):
            continue
        if layer is not None and layer < model.n_layers:
            layer_weights[layer] += tensor.n_bytes
            if EXPERT_TENSOR.search(tensor.name):
                expert_weights[layer] += tensor.n_bytes
        elif tensor.name.startswith(INPUT_TENSORS) and not _is_output_norm(model, tensor.name):
            input_weights += tensor.n_bytes
            token_embd += tensor.n_bytes if tensor.name == "token_embd.weight" else 0
        else:
            output_weights += tensor.n_bytes
            has_output = has_output or tensor.name.startswith("output.")
    fused = any(t.name.endswith(".attn_qkv.weight") for t in model.tensors)
    heads_kv = tuple(model.head_count_kv_per_layer()[: model.n_layers])
    heads_kv += (0,) * (model.n_layers - len(heads_kv))
    recurrent = recurrent_layers(model)
    return Footprint(model.n_layers, tuple(layer_weights), input_weights, output_weights,
                     0 if has_output else token_embd, tuple(swa_layers(model)), fused, heads_kv,
                     max(model.head_count_per_layer() or [0]), tuple(kv_layers(model, recurrent)),
                     tuple(recurrent), tuple(expert_weights))


def estimate(model: ModelInfo, settings: MemorySettings, gpus: Sequence[GpuDevice] = (),
             prints: Footprint | None = None) -> MemoryEstimate:
    """Bytes per device (GPUs, then the host) for loading `model` under `settings`.

    Pass `prints` (from footprint(model)) when estimating the same model many times.
    """
    check_settings(settings)
    prints = prints or footprint(model)
    layer_devices = place_layers(model.n_layers, settings.n_gpu_layers, gpus)
    weights = weights_by_device(prints, layer_devices, settings.cpu_expert_layers)
    kv = kv_by_device(model, settings, layer_devices, prints)
    compute = compute_by_device(model, settings, layer_devices, prints)
    other = {HOST: output_buffer_bytes(model, settings)}
    names = [g.name for g in gpus] + [HOST]
    devices = tuple(DeviceMemory.of(n, "host" if n == HOST else "gpu", weights.get(n, 0), kv.get(n, 0),
                                    compute.get(n, 0), other.get(n, 0)) for n in names)
    return MemoryEstimate(devices, tuple(layer_devices))


def check_settings(settings: MemorySettings) -> None:
    """Raise EstimateError, with a sentence, for settings llama.cpp would refuse or we cannot size."""
    if settings.kv_type not in KV_TYPES:
        raise EstimateError(f"Unknown KV cache type {settings.kv_type!r}; choose one of {', '.join(KV_TYPES)}.")
    if settings.n_ctx <= 0 or settings.n_ubatch <= 0 or settings.n_batch <= 0 or settings.n_seq <= 0:
        raise EstimateError("Context, batch, micro-batch and sequence counts must be positive.")
    if needs_flash_attention(settings.kv_type) and not settings.flash_attn:
        raise EstimateError(f"A quantized KV cache ({settings.kv_type}) needs flash attention on.")


# --- placement ---------------------------------------------------------------------------------------

def place_layers(n_layers: int, n_gpu_layers: int, gpus: Sequence[GpuDevice]) -> list[str]:
    """Device of each repeating layer, then of the output layer, as llama.cpp's load_tensors decides.

    The last n_gpu_layers of the n_layers + 1 layers go to the GPUs; each GPU takes a contiguous run in
    proportion to its free memory (the cumulative split points are compared in float32, like llama.cpp).
    """
    total = n_layers + 1
    wanted = total if n_gpu_layers < 0 else n_gpu_layers
    start = max(total - wanted, 0)
    active = min(wanted, total) if gpus else 0
    out = [HOST] * total
    if active <= 0:
        return out
    if len(gpus) == 1:
        out[start:start + active] = [gpus[0].name] * active
        return out
    splits = _split_points([g.free_bytes for g in gpus])
    positions = np.arange(active, dtype=np.float32) / np.float32(active)
    indices = np.minimum(np.searchsorted(splits, positions, side="right"), len(gpus) - 1)
    for offset, index in enumerate(indices.tolist()):
        out[start + offset] = gpus[index].name
    return out


def _split_points(free: Sequence[int]) -> np.ndarray:
    values = np.array([float(f) for f in free] or [1.0], dtype=np.float32)
    if float(values.sum()) <= 0:
        values = np.ones_like(values)
    cumulative = np.cumsum(values, dtype=np.float32)
    return (cumulative / cumulative[-1]).astype(np.float32)


# --- weights -----------------------------------------------------------------------------------------

def weights_by_device(prints: Footprint, layer_devices: Sequence[str], cpu_expert_layers: int = 0) -> dict[str, int]:
    """Weight bytes per device from the tensor table, given each layer's device (the output layer last).

    The expert tensors of the first cpu_expert_layers layers stay on the host wherever their layer is.
    """
    totals: dict[str, int] = defaultdict(int)
    for il, (device, size) in enumerate(zip(layer_devices, prints.layer_weights)):
        experts = prints.expert_weights[il] if il < cpu_expert_layers and prints.expert_weights else 0
        totals[device] += size - experts
        totals[HOST] += experts
    output_device = layer_devices[-1]
    totals[HOST] += prints.input_weights
    totals[output_device] += prints.output_weights
    if output_device != HOST:
        totals[output_device] += prints.tied_output_bytes
    return dict(totals)


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


def mtp_layers(model: ModelInfo) -> int:
    """The multi-token-prediction blocks at the end (nextn_predict_layers): llama.cpp skips them unless asked."""
    return max(int(model.arch_value("nextn_predict_layers", 0) or 0), 0)


def _is_output_norm(model: ModelInfo, name: str) -> bool:
    return model.architecture in ("lfm2", "lfm2moe") and name.startswith("token_embd_norm.")


def recurrent_layers(model: ModelInfo) -> list[bool]:
    """Which repeating layers keep a recurrent state (llama.cpp's is_recr), per architecture."""
    n, arch = model.n_layers, model.architecture
    trunk = n - mtp_layers(model)
    if arch in RECURRENT_ARCHS or arch in ATTENTION_AND_STATE:
        return [True] * n
    if arch in RECURRENT_WHERE_NO_KV_HEADS:
        heads = model.head_count_kv_per_layer()
        ffn = _per_layer(model.feed_forward_length, n)
        return [il < trunk and heads[il] == 0 and (arch not in RECURRENT_UNLESS_FFN or ffn[il] == 0)
                for il in range(n)]
    if arch in RECURRENT_BETWEEN_ATTENTION:
        explicit = model.arch_value("attention.recurrent_layers")
        if isinstance(explicit, (tuple, list)) and len(explicit) >= n:
            return [bool(x) for x in explicit[:n]]
        every = int(model.arch_value("full_attention_interval", 4) or 4)
        return [il < trunk and (il + 1) % every != 0 for il in range(n)]
    return [False] * n


def kv_layers(model: ModelInfo, recurrent: Sequence[bool]) -> list[bool]:
    """Which repeating layers own a KV cache: attention layers of the trunk, before any shared-KV tail."""
    heads = model.head_count_kv_per_layer()
    limit = min(model.n_layers - mtp_layers(model), KV_FROM_START.get(model.architecture, model.n_layers))
    both = model.architecture in ATTENTION_AND_STATE
    return [il < limit and heads[il] > 0 and (both or not recurrent[il]) for il in range(model.n_layers)]


def _per_layer(value, n: int) -> list[int]:
    if isinstance(value, (tuple, list)):
        return [int(x) for x in value[:n]] + [0] * max(0, n - len(value))
    return [int(value or 0)] * n


def is_mla(model: ModelInfo) -> bool:
    """Multi-head latent attention: the cache keeps one compressed K row per token and no V."""
    return bool(model.arch_value("attention.key_length_mla") and model.arch_value("attention.value_length_mla"))


def kv_layer_bytes(model: ModelInfo, settings: MemorySettings, prints: Footprint | None = None) -> list[int]:
    """KV cache plus recurrent-state bytes of each repeating layer."""
    prints = prints or footprint(model)
    full, window = kv_cells(settings), swa_cells(model, settings)
    state = recurrent_state_bytes(model, settings)
    mla = is_mla(model)
    per_cell: dict[int, int] = {}
    out = []
    for il, (n_kv, is_swa) in enumerate(zip(prints.heads_kv, prints.is_swa)):
        size = state if prints.recurrent[il] else 0
        if prints.owns_kv[il]:
            if n_kv not in per_cell:
                values = 0 if mla else row_bytes(settings.kv_type, n_kv * model.value_length)
                per_cell[n_kv] = row_bytes(settings.kv_type, n_kv * model.key_length) + values
            size += per_cell[n_kv] * (window if is_swa else full)
        out.append(size)
    return out


def recurrent_state_bytes(model: ModelInfo, settings: MemorySettings) -> int:
    """One recurrent layer's state for every sequence: llama.cpp's n_embd_r + n_embd_s rows, f32."""
    n_embd = model.embedding_length
    head_size = int(model.arch_value("wkv.head_size", 0) or 0)
    l_cache = int(model.arch_value("shortconv.l_cache", 0) or 0)
    if head_size:            # RWKV: token shifts and the wkv state
        r, s = int(model.arch_value("token_shift_count", 2) or 2) * n_embd, n_embd * head_size
    elif l_cache:            # LFM2: the last l_cache - 1 inputs of the short convolution
        r, s = n_embd * (l_cache - 1), 0
    else:                    # Mamba / Mamba2 / gated DeltaNet: convolution window and scan state
        d_conv = int(model.arch_value("ssm.conv_kernel", 0) or 0)
        d_inner = int(model.arch_value("ssm.inner_size", 0) or 0)
        d_state = int(model.arch_value("ssm.state_size", 0) or 0)
        n_group = int(model.arch_value("ssm.group_count", 0) or 0)
        r, s = max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state), d_state * d_inner
    return (r + s) * F32 * max(settings.n_seq, 1)


def kv_by_device(model: ModelInfo, settings: MemorySettings, layer_devices: Sequence[str],
                 prints: Footprint | None = None) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for il, size in enumerate(kv_layer_bytes(model, settings, prints)):
        totals[layer_devices[il]] += size
    return dict(totals)


# --- output buffer -----------------------------------------------------------------------------------

def output_buffer_bytes(model: ModelInfo, settings: MemorySettings) -> int:
    """llama_context's output buffer: logits for one output per sequence, f32, on the host."""
    return model.vocab_size * max(settings.n_seq, 1) * F32


def _pad(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


# --- compute buffers ---------------------------------------------------------------------------------
#
# llama.cpp reserves, per device, the peak working memory of the worst-case graph: one micro-batch of
# n_ubatch tokens over a full KV cache. ggml's allocator reuses memory as tensors die, so the peak is the
# largest of a few phases of the graph, each a sum of the tensors alive at once. Counted in f32 rows of
# n_ubatch tokens; E = n_embd, Q = n_head*head_dim, K = n_head_kv*head_dim, F = n_ff (MoE: n_ff_exp*n_used,
# U = n_used). The host keeps one more E row alive throughout (the input embeddings).
#
#   output     logits (n_vocab x n_outputs) + 1 E (+1 host; +1 Mamba, gpt-oss)
#   ffn        3F + 3E (+1 host) + the attention masks, which live from the first layer to the last;
#              MoE: 3F + 1.5 E*U (+1 E host); Mamba: 6.5 d_inner
#   attention  without flash attention: scores (n_kv x n_head) + masks (f32) + 2E + 2Q + 2K (+1 E host;
#              Gemma keeps 3Q; a fused qkv projection needs no K copies)
#   inputs     the host alone when every layer is offloaded: masks (f16; f32 plus a f16 copy without flash
#              attention) and 2E
#   MoE with its expert layers on the host and only the output on a GPU: llama.cpp offloads the expert
#   products of the large batch to that GPU: +1.5 E*U there.
#   MoE experts kept on the host for offloaded layers (cpu_expert_layers): the host computes those expert
#   products: 3F + 1.5 E*U there (dry run on the RPC device: Qwen3-30B-A3B 80 MiB, this 84; gpt-oss-20b 89, 101).
#
# Masks: one per cache (full attention, sliding window), n_kv x n_ubatch. The coefficients were read off
# llama.cpp's graphs and checked against its dry run on the model zoo (bench/bench_memory.py); ggml's
# allocator adds a few MiB of fragmentation that no formula follows (worst seen: Gemma 3 at 32k, +46 MiB).

OUTPUT_EXTRA_EMBD = {"mamba": 1, "mamba2": 1, "gpt-oss": 1}
GEMMA_FAMILY = frozenset({"gemma", "gemma2", "gemma3", "gemma3n", "gemma-embedding"})
RECURRENT_INNER_ROWS = 6.5


@dataclass(frozen=True)
class _GraphDims:
    tokens: int              # n_ubatch, capped by the context
    outputs: int             # logits rows reserved
    embd: int
    q: int
    k: int
    heads: int
    ffn: float               # F (MoE: n_ff_exp * n_used)
    moe_used: int
    vocab: int
    masks: tuple[int, ...]   # n_kv of each mask
    fused_qkv: bool
    gemma: bool
    output_extra: int
    recurrent_inner: int     # d_inner of a recurrent (Mamba) layer, else 0


def _graph_dims(model: ModelInfo, settings: MemorySettings, prints: Footprint) -> _GraphDims:
    n_ctx = padded_context(settings)
    tokens = min(n_ctx, settings.n_ubatch)
    heads = prints.max_heads
    heads_kv = max(prints.heads_kv or (0,))
    used = model.expert_used_count or 0
    if model.expert_count and used:
        n_ff_exp = int(model.arch_value("expert_feed_forward_length", 0) or 0) or _max_ff(model)
        ffn = float(n_ff_exp * used)
    else:
        ffn, used = float(_max_ff(model)), 0
    recurrent = model.architecture in RECURRENT_ARCHS
    masks: tuple[int, ...] = ()
    if not recurrent and heads_kv > 0:
        masks = (kv_cells(settings),) + ((swa_cells(model, settings),) if any(prints.is_swa) else ())
    return _GraphDims(tokens, min(tokens, settings.n_batch), model.embedding_length, heads * model.key_length,
                      heads_kv * model.key_length, heads, ffn, used, model.vocab_size, masks, prints.fused_qkv,
                      model.architecture in GEMMA_FAMILY, OUTPUT_EXTRA_EMBD.get(model.architecture, 0),
                      int(model.arch_value("ssm.inner_size", 0) or 0) if recurrent else 0)


def _max_ff(model: ModelInfo) -> int:
    value = model.feed_forward_length
    if isinstance(value, tuple):
        return max(value or (0,))
    return int(value or 0)


def compute_by_device(model: ModelInfo, settings: MemorySettings, layer_devices: Sequence[str],
                      prints: Footprint | None = None) -> dict[str, int]:
    """Peak compute-buffer bytes per device, as llama.cpp's graph reservation sizes them."""
    dims = _graph_dims(model, settings, prints or footprint(model))
    host_has_layers = HOST in layer_devices[:-1]
    host_experts = any(d != HOST for d in layer_devices[:min(settings.cpu_expert_layers, len(layer_devices) - 1)])
    out: dict[str, int] = {}
    for device in dict.fromkeys(list(layer_devices) + [HOST]):
        has_layers = device in layer_devices[:-1]
        has_output = layer_devices[-1] == device
        role = _Role(device == HOST, has_layers, has_output, host_has_layers, device == HOST and host_experts)
        out[device] = _device_compute(dims, settings, role)
    return out


@dataclass(frozen=True)
class _Role:
    host: bool
    layers: bool
    output: bool
    host_has_layers: bool
    experts: bool = False    # runs the expert products of layers offloaded to a GPU (their experts stay here)


def _device_compute(d: _GraphDims, settings: MemorySettings, role: _Role) -> int:
    row = d.tokens * F32
    mask_cells = sum(d.masks) * d.tokens
    mask_bytes = mask_cells * (2 if settings.flash_attn else F32)
    extra = 1 if role.host else 0
    phases = [0.0]
    if role.output:
        quantized = role.host and bool(d.masks) and is_quantized(settings.kv_type)
        rows = d.embd * (1 + extra + d.output_extra + quantized)
        if d.moe_used and not role.host and not role.layers and role.host_has_layers:
            rows += 1.5 * d.embd * d.moe_used
        phases.append(d.outputs * F32 * d.vocab + row * rows)
    if role.layers:
        phases.append(mask_bytes + row * _layer_units(d, extra))
        if not settings.flash_attn and d.masks:
            phases.append(row * d.heads * max(d.masks) + mask_bytes + row * _attention_units(d, extra))
    if role.experts and d.moe_used:
        phases.append(row * (3 * d.ffn + 1.5 * d.embd * d.moe_used))
    if role.host and not role.layers and not role.output:
        inputs = mask_cells * 2 if settings.flash_attn else mask_cells * (F32 + 1)
        phases.append(row * 2 * d.embd + inputs)
    return int(max(phases))


def _layer_units(d: _GraphDims, extra: int) -> float:
    if d.recurrent_inner:
        return RECURRENT_INNER_ROWS * d.recurrent_inner
    if d.moe_used:
        return 3 * d.ffn + 1.5 * d.embd * d.moe_used + extra * d.embd
    return 3 * d.ffn + (3 + extra) * d.embd


def _attention_units(d: _GraphDims, extra: int) -> float:
    q_copies = 3 if d.gemma else 2
    k_copies = 0 if d.fused_qkv else 2
    return (2 + extra) * d.embd + q_copies * d.q + k_copies * d.k
