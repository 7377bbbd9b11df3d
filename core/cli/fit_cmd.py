"""`llamadesk-cli fit MODEL.gguf`: will this model run here, how many layers go to the GPU, how fast.

Prints the plan and where the memory goes, per device. `--json` prints one object: verdict,
n_gpu_layers, n_layers, context, kv_type, flash_attn, predicted_tokens_per_second,
predicted_prompt_tokens_per_second, deciding_figure, explanation, exact, and devices (name, kind: "gpu",
"worker" or "host", free_bytes, weights_bytes, kv_bytes, compute_bytes, other_bytes, total_bytes, and a
worker's address), and projector (a vision model's: file, weights_bytes, image_buffer_counted, note; null
without one). A vision model's projector is --mmproj PATH, else the one a load would take beside the model; it is
counted where the load puts it. With --worker, --exact attaches the workers to llama.cpp's dry run too.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from core.cli import fit_options
from core.cli.errors import fail
from core.fit.estimate import MemorySettings
from core.fit.planner import DevicePlan, Plan
from core.gguf.reader import ModelInfo
from core.machine import hardware, workers
from core.models.fit_check import FileRef, ProjectorRef, check_file
from core.models.projectors import projector_path_for_load
from core.platform.units import format_bytes


def register(subparsers) -> None:
    parser = subparsers.add_parser("fit", help="plan how a GGUF model fits this machine (or a profile)")
    parser.add_argument("model", help="path to a .gguf file (a header-only copy is enough)")
    fit_options.add_arguments(parser)
    parser.add_argument("--mmproj", metavar="PATH",
                        help="a vision model's projector (default: the mmproj file a load would take beside it)")
    parser.add_argument("--exact", action="store_true",
                        help="replace the estimate with llama.cpp's own dry run of the chosen settings")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        conditions = fit_options.conditions(args)
        fit = check_file(FileRef(Path(args.model).name, local_path=Path(args.model), projector=_projector(args)),
                         conditions)
        if fit.plan is None:
            return fail(fit.error or f"{args.model} could not be planned.")
        chosen = _exact(args.model, fit.info, conditions.hardware, fit.plan) if args.exact else fit.plan
    except hardware.HardwareError as error:
        return fail(str(error))
    except ExactModeError as error:
        return fail(str(error))
    data = _json(chosen, exact=args.exact)
    data["projector"] = fit.projector.to_json() if fit.projector is not None else None
    text = describe(fit.info, conditions.hardware, chosen, args.exact)
    print(json.dumps(data, indent=2) if args.json else _with_projector_line(text, fit.projector))
    return 0


def _projector(args: argparse.Namespace) -> ProjectorRef | None:
    """The projector the load would take: --mmproj, else the one paired beside the model."""
    path = getattr(args, "mmproj", None) or projector_path_for_load(args.model)
    return ProjectorRef(Path(path).name, local_path=Path(path)) if path else None


def _with_projector_line(text: str, counted) -> str:
    if counted is None:
        return text
    model_line, rest = text.split("\n", 1)
    return f"{model_line}\nProjector    {counted.sentence()}\n{rest}"


# --- exact mode ---------------------------------------------------------------------------------------

class ExactModeError(RuntimeError):
    pass


def _exact(path: str, info: ModelInfo, snapshot: hardware.HardwareSnapshot, chosen: Plan) -> Plan:
    """The same plan, its breakdown replaced by llama.cpp's dry run of the chosen settings."""
    from core.fit.dry_run import DryRunError, dry_run

    local_gpus = [d for d in chosen.devices if d.kind == "gpu"]
    if local_gpus and snapshot.source != "probe" and chosen.n_gpu_layers > 0:
        raise ExactModeError("--exact runs llama.cpp on this machine's own devices, so it cannot check a "
                             "simulated GPU profile; drop --hardware or --exact.")
    settings = MemorySettings(n_gpu_layers=chosen.n_gpu_layers, n_ctx=chosen.context, kv_type=chosen.kv_type,
                              flash_attn=chosen.flash_attn)
    try:
        measured = dry_run(path, settings, model=info, rpc_endpoints=workers.addresses_of(snapshot))
    except DryRunError as error:
        raise ExactModeError(str(error).splitlines()[0]) from error
    # Workers' devices carry the same name in the plan and the dry run; this computer's GPUs go in order.
    by_name = {d.name: d for d in measured.devices}
    measured_local = iter(d for d in measured.devices if d.kind == "gpu" and d.name not in
                          {p.name for p in chosen.devices if p.kind == "worker"})
    devices = []
    for device in chosen.devices[:-1]:
        source = by_name.get(device.name) if device.kind == "worker" else next(measured_local, None)
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
        speed = ("unknown: no memory-bandwidth figure for a device it runs on (LlamaDesk measures this "
                 "machine's once, at its first start)")
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
    names = [d.name if d.is_gpu_like else "Host (RAM)" for d in devices]
    width = max(len("Device"), *(len(n) for n in names))
    header = "Device".ljust(width) + "".join(c.rjust(11) for c in COLUMNS)
    rows = [header, "-" * len(header)]
    for name, d in zip(names, devices):
        cells = (d.free_bytes, d.weights_bytes, d.kv_bytes, d.compute_bytes, d.other_bytes, d.total_bytes)
        rows.append(name.ljust(width) + "".join(format_bytes(c).rjust(11) for c in cells))
    return "\n".join(rows)
