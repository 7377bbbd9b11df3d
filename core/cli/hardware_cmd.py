"""`llamadesk-cli hardware`: what this machine offers a model (host, GPUs, llama.cpp backends)."""
from __future__ import annotations

import argparse

from core.machine import hardware
from core.cli.errors import fail
from core.platform.units import format_bytes


def register(subparsers) -> None:
    parser = subparsers.add_parser("hardware", help="show this machine's memory, GPUs and llama.cpp backends")
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    parser.add_argument("--profile", metavar="NAME_OR_JSON", help="show a saved hardware profile instead")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        snapshot = hardware.load_profile(args.profile) if args.profile else hardware.probe()
    except hardware.HardwareError as error:
        return fail(str(error))
    if args.json:
        print(snapshot.to_json())
        return 0
    print(describe(snapshot))
    return 0


def describe(snapshot: "hardware.HardwareSnapshot") -> str:
    host = snapshot.host
    lines = [
        f"Host      {host.cpu_name} · {host.physical_cores} cores ({host.logical_cores} threads) · {host.os}",
        f"RAM       {format_bytes(host.ram_available_bytes)} free of {format_bytes(host.ram_total_bytes)}",
    ]
    if host.memory_bandwidth_bytes_per_s:
        lines.append(f"Bandwidth {host.memory_bandwidth_bytes_per_s / 1e9:.1f} GB/s (host memory)")
    for gpu in snapshot.gpus:
        kind = "unified" if gpu.unified_memory else "VRAM"
        lines.append(f"GPU {gpu.index}     {gpu.name} · {format_bytes(gpu.free_bytes)} free of "
                     f"{format_bytes(gpu.total_bytes)} {kind}")
    if not snapshot.gpus:
        lines.append("GPU       none detected")
    lines.append(f"Backends  {', '.join(snapshot.backends) or 'none'} (this llama.cpp build)")
    lines.extend(f"WARNING   {warning}" for warning in snapshot.warnings)
    return "\n".join(lines)
