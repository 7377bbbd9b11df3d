"""The step-down ladder: gentler load settings to try when a model does not fit as planned.

Order (ISSUE 4): fewer GPU layers -> smaller context -> quantized KV cache -> CPU only. Each rung
keeps the rungs before it, so the last one is the most modest configuration worth trying.

A MoE load that already keeps the experts of its first layers in host memory (the planner chose it) first moves the
experts of more layers there, before it drops whole layers: attention and the KV cache stay on the GPU, and only the
experts in use are read from host memory, so it costs less speed (llama.cpp's own fitter tries the experts first too).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from core.engine.protocol import LoadSettings, ModelFacts
from core.gguf.kv_types import SMALLER_KV_TYPE, is_quantized

GPU_FRACTIONS = (0.75, 0.5)
EXPERT_SHARES = (0.5, 1.0)   # of the layers whose experts are still on the GPU: half of them, then all
MIN_CONTEXT = 2048
MAX_CONTEXT_STEPS = 3


@dataclass(frozen=True)
class Rung:
    settings: LoadSettings
    change: str               # e.g. "smaller context: 16384 -> 8192 tokens"


def ladder(original: LoadSettings, facts: ModelFacts | None) -> list[Rung]:
    rungs: list[Rung] = []
    current = original
    for rung in _more_experts_on_host(current, facts):
        rungs.append(rung)
        current = rung.settings
    for rung in _fewer_gpu_layers(current, facts):
        rungs.append(rung)
        current = rung.settings
    for rung in _smaller_contexts(current, facts):
        rungs.append(rung)
        current = rung.settings
    if not is_quantized(current.kv_type):
        current = replace(current, kv_type=SMALLER_KV_TYPE, flash_attn=True)
        rungs.append(Rung(current, f"quantized KV cache: {original.kv_type} -> {SMALLER_KV_TYPE} "
                                   "(with flash attention)"))
    if current.n_gpu_layers != 0:
        rungs.append(Rung(replace(current, n_gpu_layers=0),
                          f"CPU only: {_layers_text(current.n_gpu_layers)} -> 0 GPU layers"))
    return rungs


def _more_experts_on_host(settings: LoadSettings, facts: ModelFacts | None) -> list[Rung]:
    """Only for a load with some experts on the host already: that is what says the model has experts."""
    kept = settings.cpu_expert_layers
    if kept <= 0 or settings.n_gpu_layers == 0 or facts is None or kept >= facts.n_layers:
        return []
    rungs, previous = [], kept
    for share in EXPERT_SHARES:
        wanted = kept + math.ceil((facts.n_layers - kept) * share)
        if wanted > previous:
            rungs.append(Rung(replace(settings, cpu_expert_layers=wanted),
                              f"more experts on the CPU: those of {previous} -> {wanted} of {facts.n_layers} layers"))
            previous = wanted
    return rungs


def _fewer_gpu_layers(settings: LoadSettings, facts: ModelFacts | None) -> list[Rung]:
    if settings.n_gpu_layers == 0:
        return []
    if settings.n_gpu_layers < 0:
        if facts is None:
            return []
        offloaded = facts.n_layers + 1                 # llama.cpp counts the output layer too
    else:
        offloaded = settings.n_gpu_layers
    rungs, previous, previous_text = [], offloaded, _layers_text(settings.n_gpu_layers, offloaded)
    for fraction in GPU_FRACTIONS:
        layers = int(offloaded * fraction)
        if 0 < layers < previous:
            rungs.append(Rung(replace(settings, n_gpu_layers=layers),
                              f"fewer GPU layers: {previous_text} -> {layers}"))
            previous, previous_text = layers, str(layers)
    return rungs


def _smaller_contexts(settings: LoadSettings, facts: ModelFacts | None) -> list[Rung]:
    sizes = []
    size = settings.n_ctx
    if facts is not None and 0 < facts.n_ctx_train < size:
        size = max(facts.n_ctx_train, MIN_CONTEXT)
        if size < settings.n_ctx:
            sizes.append(size)
    while len(sizes) < MAX_CONTEXT_STEPS and size // 2 >= MIN_CONTEXT:
        size //= 2
        sizes.append(size)
    rungs, previous = [], settings.n_ctx
    for size in sizes:
        rungs.append(Rung(replace(settings, n_ctx=size), f"smaller context: {previous} -> {size} tokens"))
        previous = size
    return rungs


def _layers_text(n_gpu_layers: int, offloaded: int | None = None) -> str:
    if n_gpu_layers < 0:
        return f"all ({offloaded})" if offloaded else "all"
    return str(n_gpu_layers)
