"""The options every fit-checking command shares (fit, files, models) and the FitConditions they make.

With no options a command plans exactly what the app would: the user's saved settings (context, KV cache, flash
attention, GPU layers, GPU margin) on this machine. Each option overrides one of them. `--worker HOST:PORT` adds
another computer's devices (`llamadesk-cli worker` running there) to the machine.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Sequence

from core import settings as settings_store
from core.fit.choice import choice_from_settings, normalized
from core.fit import calibration
from core.machine import hardware, workers
from core.models.fit_check import FitConditions

FLASH_CHOICES = {"on": True, "off": False}


def add_arguments(parser: argparse.ArgumentParser, *, layers: bool = True) -> None:
    parser.add_argument("--ctx", type=int, default=None,
                        help="context in tokens (default: your saved setting, at most the model's trained one)")
    parser.add_argument("--kv-type", default=None, choices=settings_store.KV_TYPES,
                        help="KV cache type (default: your saved setting)")
    parser.add_argument("--flash-attn", default=None, choices=sorted(FLASH_CHOICES),
                        help="flash attention (default: your saved setting; a quantized KV cache turns it on)")
    if layers:
        parser.add_argument("--gpu-layers", type=int, default=None,
                            help="exactly N offloadable layers on the GPU, fit or not (-1 = all; default: Auto)")
    parser.add_argument("--hardware", default=None, metavar="PROFILE_OR_JSON",
                        help="plan for a shipped profile (laptop-8gb, ...), a snapshot JSON file, or JSON text")
    add_worker_argument(parser)


def add_worker_argument(parser: argparse.ArgumentParser) -> None:
    """--worker HOST:PORT, repeatable: fit, files, models and chat share it."""
    parser.add_argument("--worker", action="append", default=[], metavar="HOST:PORT", dest="workers",
                        help="also use the memory of another computer running `llamadesk-cli worker` there "
                             "(llama.cpp RPC); repeat for several")


def conditions(args: argparse.Namespace) -> FitConditions:
    """The machine (probed or a profile, plus the workers) and the choice: saved settings, overridden by the
    options given. Raises hardware.HardwareError for an unknown profile or a worker that cannot be used."""
    saved = settings_store.load()
    choice = choice_from_settings(saved, args.ctx)
    if args.kv_type is not None:
        choice = replace(choice, kv_type=args.kv_type)
    if args.flash_attn is not None:
        choice = replace(choice, flash_attn=FLASH_CHOICES[args.flash_attn])
    if getattr(args, "gpu_layers", None) is not None:
        choice = replace(choice, gpu_layers=args.gpu_layers)
    snapshot = machine(args.hardware, getattr(args, "workers", ()))
    # A margin learned from this machine's loads says nothing about a profile of another machine.
    margin = (calibration.effective_margin_bytes(saved.safety_margin_bytes, saved.learned_margin)
              if args.hardware is None else saved.safety_margin_bytes)
    return FitConditions(snapshot, normalized(choice), margin)


def machine(choice: str | None, worker_addresses: Sequence[str] = ()) -> hardware.HardwareSnapshot:
    """This computer (or a profile) with the devices of the workers at these addresses after its own GPUs."""
    if choice is None:
        snapshot = hardware.probe(measure_bandwidth=True)  # measured once per machine, then cached
    elif choice.lstrip().startswith("{"):
        snapshot = hardware.HardwareSnapshot.from_json(choice)
    else:
        snapshot = hardware.load_profile(choice)
    if not worker_addresses:
        return snapshot
    try:
        return workers.with_workers(snapshot, workers.probe_workers(worker_addresses))
    except workers.WorkerError as error:
        raise hardware.HardwareError(str(error)) from None
