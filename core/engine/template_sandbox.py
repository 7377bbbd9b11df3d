"""The process that renders chat templates: a model file's Jinja code runs here, never in the engine.

A template is code from a downloaded file. jinja2's immutable sandbox keeps it away from Python objects,
but not from loops without end or allocations without bound, so it runs in this short-lived child under
a memory limit (RLIMIT_AS, where the system has one); the parent (template_renderer.py) kills it when it
runs past its time. Arithmetic is intercepted so jinja2 cannot fold `'x' * 10**10` while compiling:
every operation happens at render time, inside the limits.

Frames on stdin/stdout: a 4-byte big-endian length, then UTF-8 JSON. A request is {"template": text} to
check that it compiles, or {"template": text, "variables": {...}} to render; the reply is {"prompt": text},
{"ok": true} or {"error": sentence, "raised": bool} ("raised": the template itself called raise_exception).

Run as `python -m core.engine.template_sandbox MEMORY_BYTES SECONDS`. SECONDS arms an alarm per request as
a backstop: should the parent die during a render that never ends, this process does not live on.
"""
from __future__ import annotations

import json
import signal
import struct
import sys
from datetime import datetime
from typing import Any, BinaryIO

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

_HEADER = struct.Struct(">I")


class TemplateRaised(Exception):
    """The template called raise_exception(message)."""


class _GenerationTag(jinja2.ext.Extension):
    """Hugging Face's `{% generation %}...{% endgeneration %}` marks training spans; render the body."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Sandbox(ImmutableSandboxedEnvironment):
    # Intercepted operators are never constant-folded at compile time (jinja2 gives up folding them).
    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/", "-"})


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _environment() -> jinja2.Environment:
    environment = _Sandbox(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                           extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    return environment


class TemplateWorkshop:
    """Compiles each template once and renders it; every failure becomes a reply with a reason."""

    def __init__(self) -> None:
        self._environment = _environment()
        self._compiled: dict[str, jinja2.Template] = {}

    def answer(self, request: dict) -> dict:
        try:
            template = self._compile(request["template"])
            if "variables" not in request:
                return {"ok": True}
            return {"prompt": template.render(**request["variables"])}
        except TemplateRaised as error:
            return {"error": f"it refused these messages: {error}", "raised": True}
        except jinja2.TemplateSyntaxError as error:
            return {"error": f"it does not parse: {error}", "raised": False}
        except MemoryError:
            raise
        except Exception as error:  # anything a template can provoke: TypeError, UndefinedError, ...
            return {"error": f"it failed: {type(error).__name__}: {error}", "raised": False}

    def _compile(self, text: str) -> jinja2.Template:
        template = self._compiled.get(text)
        if template is None:
            template = self._environment.from_string(text)
            self._compiled[text] = template
        return template


def read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    body = stream.read(length)
    return body if len(body) == length else None


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _limit_memory(extra_bytes: int) -> None:
    """Let this process grow by extra_bytes of address space beyond what it holds now."""
    try:
        import resource
        with open("/proc/self/statm") as statm:
            held = int(statm.read().split()[0]) * resource.getpagesize()
    except (ImportError, OSError, ValueError):
        return                                   # no RLIMIT_AS here: the time limit still holds
    limit = held + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _arm_alarm(seconds: int) -> None:
    if hasattr(signal, "alarm"):
        signal.alarm(seconds)               # SIGALRM's default action ends the process


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is for the parent; it ends this process
    workshop = TemplateWorkshop()
    _limit_memory(int(argv[1]) if len(argv) > 1 else 512 * 1024 * 1024)
    alarm_seconds = int(float(argv[2])) + 2 if len(argv) > 2 else 0
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (frame := read_frame(stdin)) is not None:
        try:
            _arm_alarm(alarm_seconds)
            reply = workshop.answer(json.loads(frame))
            _arm_alarm(0)
            payload = json.dumps(reply, ensure_ascii=False).encode("utf-8")
        except MemoryError:
            payload = b'{"error": "memory", "raised": false}'
            write_frame(stdout, payload)
            return 3                             # the heap may be in pieces: start afresh
        write_frame(stdout, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
