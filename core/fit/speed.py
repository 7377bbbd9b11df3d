"""How fast a planned model will run: generation from memory bandwidth, prompt processing from compute.

Generating one token reads every active weight once, plus the KV cache written so far, so each device
spends (bytes it holds and reads) / (its bandwidth) per token and a partial offload adds both sides'
times. For a MoE model only the experts in use are read: expert tensors count n_used / n_experts of
their size, and they are read where they are kept: with cpu_expert_layers = k the experts of the first k
layers are read from host memory even when their layer is on a GPU (attention, KV and shared experts are
read on the GPU), so the host's share of every token grows with k. Achieved bandwidth is a fraction of the peak (GPU spec sheets) or of the measured copy rate
(host); the fractions below are typical of llama.cpp's quantised matrix-vector kernels.

Workers (other computers' devices over llama.cpp RPC) add the network to every token: where consecutive
layers sit on different computers, the hidden state (n_embd activations of ACTIVATION_BYTES each) crosses the
link, and every crossing to or from a worker waits a round trip (llama.cpp's RPC client sends the data and the
graph and waits for the answer). The token enters on this computer (the embeddings stay in its RAM) and its
logits (n_vocab activations) come back to it, so a worker holding the first or the output layer adds those
crossings too. A hop between two workers passes through this computer: both links count.

Prompt processing is compute-bound: about 2 FLOPs per active weight per token. The throughputs are
coarse (no FLOPs table): per physical core for the host, and a multiple of memory bandwidth for GPUs,
so that figure is an order of magnitude, labelled as such by the callers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from core.gguf.reader import ModelInfo
from core.fit.estimate import EXPERT_TENSOR, HOST, Footprint

GPU_BANDWIDTH_EFFICIENCY = 0.75
HOST_BANDWIDTH_EFFICIENCY = 0.8
KV_FILL = 0.5                      # tokens per second quoted at a half-full context
HOST_FLOPS_PER_CORE = 40e9         # achieved on quantised prompt batches (AVX2-class cores)
GPU_FLOPS_PER_BANDWIDTH = 40.0     # achieved FLOP/s per byte/s of memory bandwidth on prompt batches
ACTIVATION_BYTES = 4               # llama.cpp passes activations between backends as f32
THIS_COMPUTER = "here"


@dataclass(frozen=True)
class NetworkLink:
    """How a worker's device is reached: its computer (host:port) and that link's measured figures."""

    machine: str
    round_trip_s: float
    bandwidth_bytes_per_s: float | None   # None: not measured (only the round trip counts)


@dataclass(frozen=True)
class SpeedPrediction:
    tokens_per_second: float | None          # generation
    prompt_tokens_per_second: float | None   # prompt processing (order of magnitude)
    bytes_per_token: int                     # weights + KV read per generated token


def predict_speed(model: ModelInfo, prints: Footprint, layer_devices: Sequence[str], kv_per_layer: Sequence[int],
                  bandwidth: Mapping[str, float | None], host_cores: int, cpu_expert_layers: int = 0,
                  links: Mapping[str, NetworkLink] | None = None) -> SpeedPrediction:
    """Tokens per second for a placement (device per layer, output last, the experts of the first
    cpu_expert_layers layers on the host), each device's bandwidth and the links to workers' devices."""
    per_device = _bytes_read_per_device(model, prints, layer_devices, kv_per_layer, cpu_expert_layers)
    total_bytes = sum(per_device.values())
    seconds = 0.0
    for device, size in per_device.items():
        rate = bandwidth.get(device)
        if not rate:
            return SpeedPrediction(None, None, total_bytes)
        efficiency = HOST_BANDWIDTH_EFFICIENCY if device == HOST else GPU_BANDWIDTH_EFFICIENCY
        seconds += size / (rate * efficiency)
    seconds += network_seconds_per_token(model, layer_devices, links or {})
    generation = 1.0 / seconds if seconds > 0 else None
    return SpeedPrediction(generation, _prompt_speed(model, prints, layer_devices, bandwidth, host_cores),
                           total_bytes)


def network_seconds_per_token(model: ModelInfo, layer_devices: Sequence[str],
                              links: Mapping[str, NetworkLink]) -> float:
    """Time one generated token spends crossing between computers: per crossing, a round trip and the
    activations over the link, for each worker on either side of it."""
    if not links:
        return 0.0
    hidden = model.embedding_length * ACTIVATION_BYTES
    path = [HOST, *layer_devices, HOST]
    seconds = 0.0
    for step, (before, after) in enumerate(zip(path, path[1:])):
        if _computer(before, links) == _computer(after, links):
            continue
        size = model.vocab_size * ACTIVATION_BYTES if step == len(path) - 2 else hidden
        for device in (before, after):
            link = links.get(device)
            if link is not None:
                seconds += link.round_trip_s + (size / link.bandwidth_bytes_per_s if link.bandwidth_bytes_per_s else 0.0)
    return seconds


def _computer(device: str, links: Mapping[str, NetworkLink]) -> str:
    link = links.get(device)
    return link.machine if link else THIS_COMPUTER


def active_fraction(model: ModelInfo) -> float:
    """Share of an expert tensor read per token: n_used / n_experts (1 for dense models)."""
    if model.expert_count and model.expert_used_count:
        return min(1.0, model.expert_used_count / model.expert_count)
    return 1.0


def active_layer_bytes(model: ModelInfo) -> list[int]:
    """Weight bytes each repeating layer reads per token."""
    return [dense + experts for dense, experts in zip(*_active_bytes(model))]


def _active_bytes(model: ModelInfo) -> tuple[list[int], list[int]]:
    """Per repeating layer: bytes read per token outside the experts, and of the experts in use."""
    fraction = active_fraction(model)
    dense, experts = [0.0] * model.n_layers, [0.0] * model.n_layers
    for tensor in model.tensors:
        layer = tensor.layer
        if layer is None or layer >= model.n_layers:
            continue
        if EXPERT_TENSOR.search(tensor.name):
            experts[layer] += tensor.n_bytes * fraction
        else:
            dense[layer] += tensor.n_bytes
    return [int(x) for x in dense], [int(x) for x in experts]


def _bytes_read_per_device(model: ModelInfo, prints: Footprint, layer_devices: Sequence[str],
                           kv_per_layer: Sequence[int], cpu_expert_layers: int = 0) -> dict[str, int]:
    totals: dict[str, int] = {}
    for il, (dense, experts) in enumerate(zip(*_active_bytes(model))):
        device = layer_devices[il]
        kv = kv_per_layer[il] if il < len(kv_per_layer) else 0
        totals[device] = totals.get(device, 0) + dense + int(kv * KV_FILL)
        expert_device = HOST if il < cpu_expert_layers else device
        totals[expert_device] = totals.get(expert_device, 0) + experts
    output_device = layer_devices[-1]
    head = prints.output_weights + prints.tied_output_bytes
    totals[output_device] = totals.get(output_device, 0) + head
    return totals


def _prompt_speed(model: ModelInfo, prints: Footprint, layer_devices: Sequence[str],
                  bandwidth: Mapping[str, float | None], host_cores: int) -> float | None:
    active = active_layer_bytes(model)
    weights_per_device: dict[str, float] = {}
    for il, size in enumerate(active):
        weights_per_device[layer_devices[il]] = weights_per_device.get(layer_devices[il], 0) + size
    head = prints.output_weights + prints.tied_output_bytes
    weights_per_device[layer_devices[-1]] = weights_per_device.get(layer_devices[-1], 0) + head
    bits = max(model.weights_bytes() * 8 / max(model.parameter_count, 1), 1.0)
    seconds = 0.0
    for device, size in weights_per_device.items():
        flops = 2 * size * 8 / bits
        if device == HOST:
            rate = max(host_cores, 1) * HOST_FLOPS_PER_CORE
        else:
            peak = bandwidth.get(device)
            if not peak:
                return None
            rate = peak * GPU_FLOPS_PER_BANDWIDTH
        seconds += flops / rate
    return 1.0 / seconds if seconds > 0 else None
