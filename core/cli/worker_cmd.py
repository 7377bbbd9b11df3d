"""`llamadesk-cli worker`: lend this computer's GPU(s) or CPU to LlamaDesk on another computer.

Runs llama.cpp's RPC server in a child process (its C loop cannot be interrupted, so this process
owns the signals and ends the child), prints `worker listening on HOST:PORT` once it accepts
connections, and stops cleanly on Ctrl-C (SIGINT) or SIGTERM. The other computer names it with
`--worker HOST:PORT` on fit and chat.

llama.cpp's RPC protocol has no password and runs whatever a client sends, so the worker listens
on 127.0.0.1 unless --allow-lan opens it to the network, which its start-up line then says.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
import signal
import sys

from core.cli.errors import fail
from core.machine import rpc
from core.platform.units import format_bytes

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50052
READY_TIMEOUT_S = 60.0
OPEN_WARNING = ("open to the network: llama.cpp's RPC protocol has no password, so anyone who can reach this "
                "port can use this computer's memory and run computations on it; use it only on a network "
                "you trust")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def register(subparsers) -> None:
    parser = subparsers.add_parser("worker", help="lend this computer's GPU or CPU to LlamaDesk elsewhere (RPC)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="IPv4 address to listen on (default: 127.0.0.1, this computer only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default: {DEFAULT_PORT})")
    parser.add_argument("--device", action="append", default=None, metavar="NAME",
                        help="a llama.cpp device to lend, e.g. CUDA0 or CPU; repeat for several "
                             "(default: every GPU, else the CPU)")
    parser.add_argument("--mem", type=memory_size, default=None, metavar="BYTES",
                        help="offer at most this much memory per device, e.g. 8G or 8589934592 "
                             "(default: what the device has free)")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="CPU threads when lending the CPU (default: half the logical cores)")
    parser.add_argument("--allow-lan", action="store_true",
                        help="allow a --host other computers can reach (a LAN address or 0.0.0.0). The RPC "
                             "protocol has no password and runs what clients send: anyone who reaches the port "
                             "can use this computer; only on a network you trust")
    parser.set_defaults(handler=run)


def memory_size(text: str) -> int:
    """'8G', '512MiB', '8589934592' -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a memory size: write bytes, or e.g. 8G or 512M")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def listen_address(host: str, allow_lan: bool) -> str:
    """The IPv4 address to bind; raises ValueError with a sentence for one the user did not open up."""
    address = DEFAULT_HOST if host == "localhost" else host
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise ValueError(f"--host {host} is not an IPv4 address (llama.cpp's RPC server binds IPv4 only), "
                         "e.g. 127.0.0.1, 192.168.1.20 or 0.0.0.0.") from None
    if not parsed.is_loopback and not allow_lan:
        reach = "every network this computer is on" if parsed.is_unspecified else "other computers"
        raise ValueError(f"--host {host} is reachable from {reach}, and llama.cpp's RPC protocol has no "
                         "password and runs what clients send; add --allow-lan to accept that on a network "
                         "you trust.")
    return address


class _Stop(Exception):
    """SIGTERM or SIGINT arrived."""


def _raise_stop(signum, frame) -> None:
    raise _Stop()


def run(args: argparse.Namespace) -> int:
    try:
        host = listen_address(args.host, args.allow_lan)
        rpc.serving_devices(args.device or ())  # an unknown --device is named here, not in the child
    except (ValueError, rpc.RpcError) as error:
        return fail(str(error))
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = None
    try:
        server = rpc.start_local_server(args.port, host=host, threads=args.threads, ready_timeout=READY_TIMEOUT_S,
                                        log_path=rpc.STDERR, devices=args.device,
                                        memory_limit_bytes=args.mem)
        print(startup_line(server.endpoint, open_to_network=not ipaddress.IPv4Address(host).is_loopback,
                           memory_limit=args.mem), flush=True)
        server.process.join()
        return fail(f"the worker's RPC server stopped by itself (exit code {server.process.exitcode}).")
    except _Stop:
        print("worker stopped", file=sys.stderr, flush=True)
        return 0
    except rpc.RpcError as error:
        return fail(str(error))
    finally:
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def startup_line(endpoint: str, *, open_to_network: bool, memory_limit: int | None) -> str:
    line = f"worker listening on {endpoint}"
    if memory_limit is not None:
        line += f", offering at most {format_bytes(memory_limit)} per device"
    if open_to_network:
        line += f" ({OPEN_WARNING})"
    return line
