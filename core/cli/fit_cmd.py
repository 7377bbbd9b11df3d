"""`llamadesk-cli fit MODEL.gguf`: will this model run here, how many layers go to the GPU, how fast.

Prints the plan and where the memory goes, per device. `--json` prints one object: verdict,
n_gpu_layers, n_layers, context, kv_type, flash_attn, predicted_tokens_per_second,
predicted_prompt_tokens_per_second, deciding_figure, explanation, exact, and devices (name, kind,
free_bytes, weights_bytes, kv_bytes, compute_bytes, other_bytes, total_bytes).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

from core.machine import hardware
from core.cli.errors import fail
from core.gguf.reader import GGUFError, ModelInfo, read_model_info
from core.fit.estimate import KV_TYPES, MemorySettings
from core.fit.planner import DevicePlan, Plan, PlanError, PlanRequest, plan
from core.platform.units import format_bytes

FLASH_CHOICES = {"on": True, "off": False, "auto": "auto"}


def register(subparsers) -> None:
    parser = subparsers.add_parser("fit", help="plan how a GGUF model fits this machine (or a profile)")
    parser.add_argument("model", help="path to a .gguf file (a header-only copy is enough)")
    parser.add_argument("--ctx", type=int, default=None, help="context in tokens (default: the trained one, "
                        "shrunk to fit)")
    parser.add_argument("--kv-type", default="f16", choices=sorted(KV_TYPES), help="KV cache type (default f16)")
    parser.add_argument("--flash-attn", default="auto", choices=sorted(FLASH_CHOICES),
                        help="flash attention (default auto = on)")
    parser.add_argument("--gpu-layers", type=int, default=None,
                        help="exactly N offloadable layers on the GPU, fit or not (-1 = all)")
    parser.add_argument("--hardware", default=None, metavar="PROFILE_OR_JSON",
                        help="plan for a shipped profile (laptop-8gb, ...), a snapshot JSON file, or JSON text")
    parser.add_argument("--exact", action="store_true",
                        help="replace the estimate with llama.cpp's own dry run of the chosen settings")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        info = read_model_info(args.model)
        snapshot = _hardware(args.hardware)
        request = PlanRequest(context=args.ctx, kv_type=args.kv_type, flash_attn=FLASH_CHOICES[args.flash_attn],
                              n_gpu_layers=args.gpu_layers, allow_context_shrink=args.ctx is None)
        chosen = plan(info, snapshot, request)
        if args.exact:
            chosen = _exact(args.model, info, snapshot, chosen)
    except (GGUFError, hardware.HardwareError, PlanError) as error:
        return fail(str(error))
    except ExactModeError as error:
        return fail(str(error))
    data = _json(chosen, exact=args.exact)
    print(json.dumps(data, indent=2) if args.json else describe(info, snapshot, chosen, args.exact))
    return 0


def _hardware(choice: str | None) -> hardware.HardwareSnapshot:
    if choice is None:
        return hardware.probe()
    if choice.lstrip().startswith("{"):
        return hardware.HardwareSnapshot.from_json(choice)
    return hardware.load_profile(choice)


# --- exact mode ---------------------------------------------------------------------------------------

class ExactModeError(RuntimeError):
    pass


def _exact(path: str, info: ModelInfo, snapshot: hardware.HardwareSnapshot, chosen: Plan) -> Plan:
    """The same plan, its breakdown replaced by llama.cpp's dry run of the chosen settings."""
    from core.fit.dry_run import DryRunError, dry_run

    gpu_plans = [d for d in chosen.devices if d.kind == "gpu"]
    if gpu_plans and snapshot.source != "probe" and chosen.n_gpu_layers > 0:
        raise ExactModeError("--exact runs llama.cpp on this machine's own devices, so it cannot check a "
                             "simulated GPU profile; drop --hardware or --exact.")
    settings = MemorySettings(n_gpu_layers=chosen.n_gpu_layers, n_ctx=chosen.context, kv_type=chosen.kv_type,
                              flash_attn=chosen.flash_attn)
    try:
        measured = dry_run(path, settings, model=info)
    except DryRunError as error:
        raise ExactModeError(str(error).splitlines()[0]) from error
    measured_gpus = [d for d in measured.devices if d.kind == "gpu"]
    devices = []
    for index, device in enumerate(gpu_plans):
        source = measured_gpus[index] if index < len(measured_gpus) else None
        devices.append(_with_figures(device, source) if source else device)
    devices.append(_with_figures(chosen.devices[-1], measured.host))
    return replace(chosen, devices=tuple(devices))


def _with_figures(device: DevicePlan, measured) -> DevicePlan:
    return replace(device, weights_bytes=measured.weights_bytes, kv_bytes=measured.kv_bytes,
                   compute_bytes=measured.compute_bytes, other_bytes=measured.other_bytes,
                   total_bytes=measured.total_bytes)


# --- output -------------------------------------------------------------------------------------------

def _json(chosen: Plan, *, exact: bool) -> dict:
    data = chosen.to_dict()
    data["exact"] = exact
    return data


COLUMNS = ("Free", "Weights", "KV cache", "Compute", "Other", "Total")


def describe(info: ModelInfo, snapshot: hardware.HardwareSnapshot, chosen: Plan, exact: bool) -> str:
    if not chosen.fits:
        speed = "none: it does not run here"
    elif chosen.predicted_tokens_per_second:
        speed = f"~{chosen.predicted_tokens_per_second:.0f} tok/s generating"
    else:
        speed = "unknown (no memory bandwidth figure for this machine)"
    if chosen.predicted_prompt_tokens_per_second:
        speed += f", ~{chosen.predicted_prompt_tokens_per_second:.0f} tok/s reading the prompt (rough)"
    lines = [
        f"Model        {info.name or info.source} ({info.architecture}, {info.quantization})",
        f"Machine      {snapshot.source}",
        f"Verdict      {chosen.verdict}",
        f"GPU layers   {chosen.n_gpu_layers} of {chosen.n_layers}",
        f"Context      {chosen.context} tokens, KV cache {chosen.kv_type}, flash attention "
        f"{'on' if chosen.flash_attn else 'off'}",
        f"Speed        {speed}",
        f"Deciding     {chosen.deciding_figure}",
        f"Why          {chosen.explanation}",
        "",
        _table(chosen.devices),
        "(figures from llama.cpp's dry run)" if exact else "(estimated; --exact asks llama.cpp itself)",
    ]
    return "\n".join(lines)


def _table(devices: tuple[DevicePlan, ...]) -> str:
    names = [d.name if d.kind == "gpu" else "Host (RAM)" for d in devices]
    width = max(len("Device"), *(len(n) for n in names))
    header = "Device".ljust(width) + "".join(c.rjust(11) for c in COLUMNS)
    rows = [header, "-" * len(header)]
    for name, d in zip(names, devices):
        cells = (d.free_bytes, d.weights_bytes, d.kv_bytes, d.compute_bytes, d.other_bytes, d.total_bytes)
        rows.append(name.ljust(width) + "".join(format_bytes(c).rjust(11) for c in cells))
    return "\n".join(rows)
