"""Rendering a chat template in a child process with a time and a memory budget.

A normal render costs a pipe round trip (well under a millisecond); the child is started once and
kept. A render that runs past RENDER_SECONDS, or that the caller stops, is ended by killing the child;
one that allocates past RENDER_MEMORY_BYTES fails inside the child with a MemoryError. Either way the
caller gets a TemplateFault with a sentence, the next render starts a fresh child, and the engine lives on.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from core.engine.template_sandbox import read_frame, write_frame

log = logging.getLogger(__name__)

RENDER_SECONDS = 5.0
RENDER_MEMORY_BYTES = 512 * 1024 * 1024
_POLL_SECONDS = 0.02
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class TemplateFault(Exception):
    """The template could not be rendered. `raised`: the template itself refused (raise_exception)."""

    def __init__(self, detail: str, *, raised: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.raised = raised


class RenderCancelled(Exception):
    """The caller asked to stop while the template was rendering."""


class TemplateRenderer:
    """Owns one sandbox child; thread-safe (one render at a time)."""

    def __init__(self, *, seconds: float = RENDER_SECONDS, memory_bytes: int = RENDER_MEMORY_BYTES) -> None:
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def check(self, template: str) -> None:
        """Raises TemplateFault if the template does not compile."""
        self._ask({"template": template}, None)

    def render(self, template: str, variables: dict, should_stop: Callable[[], bool] | None = None) -> str:
        return self._ask({"template": template, "variables": variables}, should_stop)["prompt"]

    def close(self) -> None:
        with self._lock:
            self._end_child()

    # --------------------------------------------------------------------------------------

    def _ask(self, request: dict, should_stop: Callable[[], bool] | None) -> dict:
        payload = json.dumps(request, ensure_ascii=False).encode("utf-8")
        with self._lock:
            process = self._child()
            verdict: list[str] = []
            done = threading.Event()
            watchdog = threading.Thread(target=self._watch, args=(process, done, verdict, should_stop),
                                        name="template-watchdog", daemon=True)
            watchdog.start()
            try:
                frame = self._exchange(process, payload)
            finally:
                done.set()
                watchdog.join()
            if verdict or frame is None:
                self._end_child()
                self._raise_for(verdict)
        reply = json.loads(frame)
        if "error" in reply:
            if reply["error"] == "memory":
                self._end_child()
                raise TemplateFault(f"it needed more than {self.memory_bytes // (1024 * 1024)} MB to "
                                    "render, so it was stopped")
            raise TemplateFault(reply["error"], raised=bool(reply.get("raised")))
        return reply

    def _raise_for(self, verdict: list[str]):
        if verdict and verdict[0] == "stopped":
            raise RenderCancelled()
        if verdict and verdict[0] == "time":
            raise TemplateFault(f"it did not finish within {self.seconds:g} seconds, so it was stopped "
                                "(it loops without end or is far too slow)")
        raise TemplateFault("its renderer stopped unexpectedly")

    @staticmethod
    def _exchange(process: subprocess.Popen, payload: bytes) -> bytes | None:
        try:
            write_frame(process.stdin, payload)
            return read_frame(process.stdout)
        except (BrokenPipeError, OSError, ValueError):
            return None

    def _watch(self, process: subprocess.Popen, done: threading.Event, verdict: list[str],
               should_stop: Callable[[], bool] | None) -> None:
        waited = 0.0
        while not done.wait(_POLL_SECONDS):
            waited += _POLL_SECONDS
            if should_stop is not None and should_stop():
                verdict.append("stopped")
            elif waited >= self.seconds:
                verdict.append("time")
            else:
                continue
            process.kill()
            return

    def _child(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._end_child()
            environment = dict(os.environ)
            environment["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(_PROJECT_ROOT), environment.get("PYTHONPATH")]))
            self._process = subprocess.Popen(
                [sys.executable, "-m", "core.engine.template_sandbox", str(self.memory_bytes),
                 str(self.seconds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd=str(_PROJECT_ROOT))
            log.debug("template sandbox %d started", self._process.pid)
        return self._process

    def _end_child(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass


_shared: TemplateRenderer | None = None
_shared_lock = threading.Lock()


def shared_renderer() -> TemplateRenderer:
    """The process's renderer (the engine worker has one model, so one child is enough)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TemplateRenderer()
        return _shared
