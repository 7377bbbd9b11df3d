"""How a model gets loaded on this machine when the user has not chosen: the planner decides.

Everything here reads files or probes hardware: call it off the UI thread.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from core import hardware
from core.engine.protocol import LoadSettings
from core.gguf import ModelInfo, read_model_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedLoad:
    info: ModelInfo
    settings: LoadSettings


def automatic_gpu_layers(info: ModelInfo, context: int,
                         snapshot: "hardware.HardwareSnapshot | None" = None) -> int:
    snapshot = snapshot or hardware.probe()
    if not snapshot.gpus:
        return 0
    from core.plan import PlanRequest, plan

    chosen = plan(info, snapshot, PlanRequest(context=context, allow_context_shrink=False))
    log.info("auto offload for %s: %s", info.source, chosen.verdict)
    return chosen.n_gpu_layers


def prepare_load(path: str, *, context: int, threads: int | None = None, gpu_layers: int | None = None,
                 cap_context_at_trained: bool = True) -> PreparedLoad:
    """Read the model's header (GGUFError if it is not a usable GGUF) and choose its load settings.

    gpu_layers None means automatic; the context is capped at the model's trained length unless asked.
    """
    info = read_model_info(path)
    if cap_context_at_trained and info.context_length:
        context = min(context, info.context_length)
    if gpu_layers is None:
        gpu_layers = automatic_gpu_layers(info, context)
    settings = LoadSettings(model_path=str(path), n_ctx=context, n_threads=threads, n_gpu_layers=gpu_layers)
    return PreparedLoad(info, settings)
