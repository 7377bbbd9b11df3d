"""What the user chose about offloading (GPU layers, MoE experts on the CPU, context, KV cache, flash attention)
and the planner request it makes, so the offload panel's preview and the real load plan the same thing.

    choice = choice_from_settings(settings)                  # or the panel's apply_requested(choice)
    request = choice.plan_request(settings.safety_margin_bytes)
    plan(info, hardware, request)                            # core.fit.planner
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from core.gguf.kv_types import DEFAULT_KV_TYPE, needs_flash_attention
from core.gguf.reader import ModelInfo
from core.machine.hardware import HardwareSnapshot
from core.fit.planner import DEFAULT_GPU_MARGIN, Plan, PlanRequest, plan
from core.settings import ALL_GPU_LAYERS, KV_TYPES, Settings

SMALLEST_CONTEXT_STEP = 512
FALLBACK_TRAINED_CONTEXT = 131072  # when a model does not say how long a context it was trained for

KV_TYPE_LABELS = {
    "f16": "f16 — full precision",
    "q8_0": "q8_0 — half the memory",
    "q4_0": "q4_0 — a quarter of the memory",
}


@dataclass(frozen=True)
class OffloadChoice:
    gpu_layers: int | None = None  # None: Auto (the planner chooses); a count: exactly that many; -1: all
    context: int = 4096
    kv_type: str = "f16"
    flash_attn: bool = True
    cpu_expert_layers: int | None = None  # MoE: None: Auto; a count: the experts of that many first layers on the CPU

    @property
    def is_auto(self) -> bool:
        return self.gpu_layers is None

    def plan_request(self, safety_margin_bytes: int = DEFAULT_GPU_MARGIN) -> PlanRequest:
        """The planner request for this choice: the context as chosen (never shrunk behind the user's back)."""
        return PlanRequest(context=self.context, kv_type=self.kv_type, flash_attn=self.flash_attn,
                           n_gpu_layers=self.gpu_layers, safety_margin_bytes=safety_margin_bytes,
                           allow_context_shrink=False, cpu_expert_layers=self.cpu_expert_layers)


def normalized(choice: OffloadChoice) -> OffloadChoice:
    """The choice llama.cpp accepts: a known KV type, flash attention on for a quantized cache."""
    kv_type = choice.kv_type if choice.kv_type in KV_TYPES else DEFAULT_KV_TYPE
    flash = choice.flash_attn or needs_flash_attention(kv_type)
    return replace(choice, kv_type=kv_type, flash_attn=flash)


def choice_from_settings(settings: Settings, context: int | None = None) -> OffloadChoice:
    return normalized(OffloadChoice(gpu_layers=settings.gpu_layers, context=context or settings.context_length,
                                    kv_type=settings.kv_type, flash_attn=settings.flash_attn,
                                    cpu_expert_layers=settings.cpu_expert_layers))


def settings_with_choice(settings: Settings, choice: OffloadChoice) -> Settings:
    """The settings that make the next load use `choice` (the context becomes the default context)."""
    choice = normalized(choice)
    return replace(settings, gpu_layers=choice.gpu_layers, context_length=choice.context,
                   kv_type=choice.kv_type, flash_attn=choice.flash_attn, cpu_expert_layers=choice.cpu_expert_layers)


def plan_request_for(settings: Settings, context: int | None = None) -> PlanRequest:
    """The planner request a load with these settings makes (context: the one to load with, when capped)."""
    return choice_from_settings(settings, context).plan_request(settings.safety_margin_bytes)


def plan_choice(model: ModelInfo, hardware: HardwareSnapshot, choice: OffloadChoice,
                safety_margin_bytes: int = DEFAULT_GPU_MARGIN) -> Plan:
    """The plan for `choice` (PlanError for a request the planner cannot work with)."""
    return plan(model, hardware, normalized(choice).plan_request(safety_margin_bytes))


def plan_for_load(model: ModelInfo, hardware: HardwareSnapshot, choice: OffloadChoice,
                  safety_margin_bytes: int = DEFAULT_GPU_MARGIN) -> Plan:
    """The plan a load of this model with `choice` gets, and so what every fit check shows: the choice with its
    context capped at the trained one (llama.cpp is never asked for more)."""
    return plan_choice(model, hardware, capped_to_trained_context(choice, model), safety_margin_bytes)


def has_experts(model: ModelInfo) -> bool:
    """A mixture-of-experts model: only such a model can keep its expert tensors on the CPU."""
    return (model.expert_count or 0) > 1


def offloadable_layers(model: ModelInfo) -> int:
    """llama.cpp's n_gpu_layers range: the repeating blocks and the output layer."""
    return model.n_layers + 1


def trained_context(model: ModelInfo) -> int:
    return model.context_length or FALLBACK_TRAINED_CONTEXT


def capped_to_trained_context(choice: OffloadChoice, model: ModelInfo) -> OffloadChoice:
    """Never more context than the model was trained for: what a load asks of llama.cpp, and so what a fit
    check must plan."""
    if model.context_length and choice.context > model.context_length:
        return replace(choice, context=model.context_length)
    return choice


def context_steps(trained: int) -> tuple[int, ...]:
    """Round context lengths to offer, from 512 up to the trained context (which is always the last)."""
    steps = []
    length = SMALLEST_CONTEXT_STEP
    while length < trained:
        steps.append(length)
        length *= 2
    return (*steps, max(trained, SMALLEST_CONTEXT_STEP))


def manual_layers(choice: OffloadChoice, n_layers: int) -> int:
    """The number of layers a manual choice puts on the GPU (-1 means all of them)."""
    if choice.gpu_layers is None:
        raise ValueError("an Auto choice has no fixed layer count")
    return n_layers if choice.gpu_layers == ALL_GPU_LAYERS else min(choice.gpu_layers, n_layers)
