"""`llamadesk-cli serve`: the OpenAI-compatible API, headless.

Prints `listening on http://HOST:PORT` on stdout once it accepts requests (port 0 picks a free port; the line says
which), and stops cleanly on SIGINT or SIGTERM: streaming answers get a few seconds to end, the engine worker is
closed, the exit status is 0.

`--worker HOST:PORT` (repeatable) lends the server other computers' memory (`llamadesk-cli worker` there): each is
probed once at start (an unusable one stops the server with its sentence), and every fit check and load plans with
their devices. They are not probed again: once a model is loaded the engine holds each worker's one connection.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Callable

from core.cli import fit_options
from core.cli.errors import fail
from core.server.config import DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, ServerConfig, ServerConfigError
from core.server.errors import ApiError
from core.engine.errors import EngineError
from core.machine import hardware, workers
from core.platform.units import format_bytes

DEFAULT_IDLE_UNLOAD_SECONDS = 600


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="answer OpenAI-compatible API requests with local models")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}, this computer only; 0.0.0.0 or a LAN "
                             "address opens it to other computers and needs --api-key)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--model", default=None, metavar="PATH_OR_NAME",
                        help="load this model now (a .gguf path or a library name); others load on demand")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every request")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="requests answered at once (the engine answers one at a time for now; others wait)")
    parser.add_argument("--idle-unload", type=float, default=DEFAULT_IDLE_UNLOAD_SECONDS, metavar="SECONDS",
                        help=f"unload the model after this long without requests (default "
                             f"{DEFAULT_IDLE_UNLOAD_SECONDS}; 0 never)")
    parser.add_argument("--ctx", type=int, default=None, help="context size (default: your saved setting)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="a browser origin allowed to call the API (repeatable; default: none)")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY_BYTES, metavar="BYTES",
                        help=f"largest request body accepted (default {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-tokens", type=int, default=None, metavar="N",
                        help="most tokens one answer may ask for (default: the model's context)")
    parser.add_argument("--queue", type=int, default=16, metavar="N",
                        help="requests allowed to wait for the engine before 429 (default 16)")
    fit_options.add_worker_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from core.server.app import create_app
    from core.server.model_host import HostOptions, ModelHost
    from core.server.serving import ServerRunner

    if args.parallel < 1 or args.idle_unload < 0 or (args.ctx is not None and args.ctx < 64) or \
            (args.max_tokens is not None and args.max_tokens < 1):
        return fail("--parallel must be ≥ 1, --idle-unload ≥ 0, --ctx ≥ 64 and --max-tokens ≥ 1")
    try:
        config = ServerConfig(args.host, args.port, args.api_key, tuple(args.cors_origin), args.max_body,
                              args.max_tokens, args.queue).checked()
    except ServerConfigError as error:
        return fail(str(error))
    try:
        probe = _machine_with_workers(args.workers)
    except workers.WorkerError as error:
        return fail(str(error))
    host = ModelHost(HostOptions(idle_unload_seconds=args.idle_unload or None, parallel=args.parallel,
                                 waiting_limit=args.queue, context=args.ctx, threads=args.threads), probe=probe)
    if args.model:
        try:
            model = host.pin(args.model)
        except (ApiError, EngineError) as error:
            host.close()
            return fail(error.message if isinstance(error, ApiError) else str(error))
        print(f"loaded {model.id}", file=sys.stderr)
    observer = _log_request if args.verbose else None
    runner = ServerRunner(create_app(config, host, observer=observer), config, host)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda _signal, _frame: runner.request_stop())
    try:
        listening = runner.start()
    except OSError as error:
        runner.stop()
        return fail(str(error))
    print(f"listening on {listening.url}", flush=True)
    runner.wait()
    runner.stop()
    print("stopped", file=sys.stderr)
    return 0


def _machine_with_workers(addresses: list[str]) -> Callable[[], hardware.HardwareSnapshot]:
    """This computer as probed each time, plus the workers as probed now (WorkerError with a sentence)."""
    lenders = workers.probe_workers(addresses)
    for lender in lenders:
        print(f"using worker {lender.address}: {format_bytes(lender.free_bytes)} free", file=sys.stderr)
    return lambda: workers.with_workers(hardware.probe(), lenders)


def _log_request(record) -> None:
    if not record.answering:
        logging.getLogger("core.server").info(
            "%s %s %d: %d+%d tokens, %.1f tok/s, %.2f s %s", record.endpoint, record.model, record.status,
            record.prompt_tokens, record.completion_tokens, record.tokens_per_second, record.seconds, record.note)
