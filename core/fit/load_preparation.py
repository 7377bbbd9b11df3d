"""How a model gets loaded on this machine: the user's offload choice, planned by the planner.

Everything here reads files or probes hardware: call it off the UI thread.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from core.fit.projector import plan_with_projector, read_projector_info
from core.machine import hardware, workers
from core.engine.protocol import LoadSettings
from core.gguf.reader import ModelInfo, read_model_info
from core.fit.choice import OffloadChoice, capped_to_trained_context, normalized
from core.fit.planner import DEFAULT_GPU_MARGIN, Plan, plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedLoad:
    info: ModelInfo
    choice: OffloadChoice
    plan: Plan
    settings: LoadSettings


def prepare_load(path: str, choice: OffloadChoice, *, threads: int | None = None,
                 safety_margin_bytes: int = DEFAULT_GPU_MARGIN, cap_context_at_trained: bool = True,
                 snapshot: "hardware.HardwareSnapshot | None" = None, n_parallel: int = 1,
                 projector_path: str | None = None) -> PreparedLoad:
    """Read the model's header (GGUFError if it is not a usable GGUF) and plan the load for `choice`.

    The context is capped at the model's trained length unless asked otherwise. n_parallel slots each get
    the chosen context, so the plan counts n_parallel sequences of it (their KV cache, their outputs).
    A vision model's projector is counted where the engine will put it. The workers in the snapshot (other
    computers lending memory) become the load's RPC servers. The plan's predicted memory travels with the
    settings, so the load can be compared with it.
    """
    info = read_model_info(path)
    if cap_context_at_trained:
        choice = capped_to_trained_context(choice, info)
    slots = max(1, n_parallel)
    machine = snapshot or hardware.probe()
    request = parallel_plan_request(choice, safety_margin_bytes, slots)
    projector = None
    if projector_path:
        chosen, projector = plan_with_projector(info, read_projector_info(projector_path), machine, choice,
                                                safety_margin_bytes, request=request)
    else:
        chosen = plan(info, machine, request)
    log.info("plan for %s: %s (%s)", info.source, chosen.verdict, chosen.explanation)
    settings = LoadSettings(
        model_path=str(path), n_ctx=chosen.context // slots, n_parallel=slots, n_threads=threads,
        projector_path=projector_path, rpc_servers=workers.addresses_of(machine),
        flash_attn=chosen.flash_attn,
        kv_type=chosen.kv_type,
        # An explicit count goes to llama.cpp as asked (an RPC or other device may take it); Auto takes the plan's.
        n_gpu_layers=chosen.n_gpu_layers if choice.gpu_layers is None else choice.gpu_layers,
        cpu_expert_layers=chosen.cpu_expert_layers,
        predicted_host_bytes=sum(d.total_bytes for d in chosen.devices if d.kind == "host"),
        predicted_gpu_bytes=sum(d.total_bytes for d in chosen.devices if d.is_gpu_like) or None,
        predicted_projector_bytes=projector.total_bytes if projector is not None else None,
    )
    return PreparedLoad(info, choice, chosen, settings)


def parallel_plan_request(choice: OffloadChoice, safety_margin_bytes: int, n_parallel: int):
    """The planner request for `choice` with n_parallel slots of its context each: llama.cpp is asked
    for n_parallel times the context, split into as many sequences."""
    request = normalized(choice).plan_request(safety_margin_bytes)
    if n_parallel <= 1:
        return request
    return replace(request, context=choice.context * n_parallel, n_seq=n_parallel)
