"""llamadesk-cli: one argparse program; each command group lives in its own module with register()."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each module exposes register(subparsers), which adds its commands with set_defaults(handler=...).
# A handler takes the parsed args and returns the process exit code.
COMMAND_MODULES = [
    "core.cli.hardware_cmd",
    "core.cli.inspect_cmd",
    "core.cli.chat_cmd",
    "core.cli.fit_cmd",
    "core.cli.models_cmd",
    "core.cli.serve_cmd",
    "core.cli.worker_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamadesk-cli", description="LlamaDesk from the command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens to stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
