"""The options every fit-checking command shares (fit, files, models) and the FitConditions they make.

With no options a command plans exactly what the app would: the user's saved settings (context, KV cache, flash
attention, GPU layers, GPU margin) on this machine. Each option overrides one of them.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from core import settings as settings_store
from core.fit.choice import choice_from_settings, normalized
from core.machine import hardware
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


def conditions(args: argparse.Namespace) -> FitConditions:
    """The machine (probed or a profile) and the choice: saved settings, overridden by the options given.
    Raises hardware.HardwareError for an unknown profile."""
    saved = settings_store.load()
    choice = choice_from_settings(saved, args.ctx)
    if args.kv_type is not None:
        choice = replace(choice, kv_type=args.kv_type)
    if args.flash_attn is not None:
        choice = replace(choice, flash_attn=FLASH_CHOICES[args.flash_attn])
    if getattr(args, "gpu_layers", None) is not None:
        choice = replace(choice, gpu_layers=args.gpu_layers)
    return FitConditions(machine(args.hardware), normalized(choice), saved.safety_margin_bytes)


def machine(choice: str | None) -> hardware.HardwareSnapshot:
    if choice is None:
        return hardware.probe()
    if choice.lstrip().startswith("{"):
        return hardware.HardwareSnapshot.from_json(choice)
    return hardware.load_profile(choice)
