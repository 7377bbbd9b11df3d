"""How a model gets loaded on this machine when the user has not chosen: the planner decides.

Everything here reads files or probes hardware: call it off the UI thread.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from core import hardware
from core.engine.protocol import LoadSettings
from core.gguf import ModelInfo, read_model_info
from core.plan import Plan, PlanRequest, plan

log = logging.getLogger(__name__)

# The engine and the planner must agree: flash attention changes the compute buffer a lot.
FLASH_ATTENTION = True


@dataclass(frozen=True)
class PreparedLoad:
    info: ModelInfo
    plan: Plan
    settings: LoadSettings


def plan_for(info: ModelInfo, context: int, gpu_layers: int | None,
             snapshot: "hardware.HardwareSnapshot | None" = None) -> Plan:
    request = PlanRequest(context=context, n_gpu_layers=gpu_layers, flash_attn=FLASH_ATTENTION,
                          allow_context_shrink=False)
    return plan(info, snapshot or hardware.probe(), request)


def prepare_load(path: str, *, context: int, threads: int | None = None, gpu_layers: int | None = None,
                 cap_context_at_trained: bool = True) -> PreparedLoad:
    """Read the model's header (GGUFError if it is not a usable GGUF) and choose its load settings.

    gpu_layers None means automatic; the context is capped at the model's trained length unless asked.
    The plan's predicted memory travels with the settings, so the load can be compared with it.
    """
    info = read_model_info(path)
    if cap_context_at_trained and info.context_length:
        context = min(context, info.context_length)
    chosen = plan_for(info, context, gpu_layers)
    log.info("plan for %s: %s (%s)", info.source, chosen.verdict, chosen.explanation)
    settings = LoadSettings(
        model_path=str(path), n_ctx=context, n_threads=threads, flash_attn=chosen.flash_attn,
        n_gpu_layers=chosen.n_gpu_layers if gpu_layers is None else gpu_layers,
        predicted_host_bytes=sum(d.total_bytes for d in chosen.devices if d.kind == "host"),
        predicted_gpu_bytes=sum(d.total_bytes for d in chosen.devices if d.kind == "gpu") or None,
    )
    return PreparedLoad(info, chosen, settings)
