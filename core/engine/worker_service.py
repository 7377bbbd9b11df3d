"""What the worker process does with each request: load a model, answer a chat, shut down.

One WorkerService per process, one model per service. Stop is a shared integer: the client writes
the id of the request to stop; the answer compares it between tokens and, during prompt
evaluation, from llama.cpp's abort callback.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from time import perf_counter

import psutil

from core.engine.chat_format import ChatTemplate, ChatTemplateError
from core.engine.chat_turn import ChatTurn
from core.engine.devices import backend_name
from core.engine.errors import InvalidGrammar, PromptTooLong
from core.engine.llama_runtime import ContextFull, DecodeFailed, LlamaRuntime, RuntimeLoadError
from core.engine.load_failure import LoadFailure, check_file, explain
from core.engine.native_log import NativeLog
from core.engine.protocol import (ChatFailed, ChatRequest, FailureKind, LoadedModel, LoadFailed,
                                  LoadProgress, LoadRequest, LoadSettings, LoadSucceeded,
                                  ShutdownRequest)
from core.engine.reasoning import HARMONY_TOKENS, TAGS, thinking_support
from core.machine.hardware import process_gpu_bytes
from core.machine.rpc import RpcError, attach_servers

log = logging.getLogger(__name__)

PROGRESS_STEP = 0.02


def resident_bytes() -> int:
    return psutil.Process().memory_info().rss


def gpu_bytes() -> int | None:
    """This process's VRAM through NVML, None where that cannot be known."""
    try:
        per_device = process_gpu_bytes([os.getpid()])
    except Exception as error:  # no NVML, no driver: unknown, not an error
        log.debug("no per-process VRAM figure: %s", error)
        return None
    return sum(per_device.values()) if per_device else None


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def offloaded_layers(requested: int, n_layers: int) -> int:
    """llama.cpp counts the output layer as one more: n_layers + 1 means everything is offloaded."""
    if requested < 0:
        return n_layers + 1
    return min(requested, n_layers + 1)


class WorkerService:
    def __init__(self, connection, stop_value) -> None:
        self.connection = connection
        self.stop_value = stop_value
        self.native_log = NativeLog()
        self.runtime: LlamaRuntime | None = None
        self.template: ChatTemplate | None = None
        self.token_texts: tuple[str, ...] = ()      # thinking markers the vocabulary holds as tokens
        self._conversation: tuple[dict, ...] = ()   # the previous request's messages ...
        self._dropped = 0                           # ... and how many of them did not fit

    def serve(self) -> None:
        while True:
            try:
                request = self.connection.recv()
                if isinstance(request, ShutdownRequest):
                    break
                self._handle(request)
            except (EOFError, OSError):
                log.info("the client is gone")
                break
        self._unload()

    def _handle(self, request) -> None:
        if isinstance(request, LoadRequest):
            self.connection.send(self._load(request.settings))
        elif isinstance(request, ChatRequest):
            self._chat(request)
        else:
            log.warning("ignoring unknown request %r", request)

    # ------------------------------------------------------------------------------------ load

    def _load(self, settings: LoadSettings) -> LoadSucceeded | LoadFailed:
        self._unload()
        problem = check_file(settings.model_path) or self._attach_rpc(settings)
        if problem is not None:
            return LoadFailed(problem.kind, problem.reason)
        self.native_log.clear()
        before = resident_bytes()
        started = perf_counter()
        try:
            runtime = LlamaRuntime.load(settings, settings.n_threads or physical_cores(),
                                        self._progress_reporter())
        except RuntimeLoadError as error:
            failure = explain(settings.model_path, self.native_log.recent(), error.stage)
            log.warning("load failed: %s", failure.reason)
            return LoadFailed(failure.kind, failure.reason, error.facts, self.native_log.recent())
        except ValueError as error:  # e.g. an unknown KV cache type
            return LoadFailed(FailureKind.INVALID, str(error))
        runtime.warm_up()
        self.runtime = runtime
        self.template = ChatTemplate.for_model(runtime.chat_template(),
                                               bos_token=runtime.token_text(runtime.bos_id),
                                               eos_token=runtime.token_text(runtime.eos_id),
                                               model_name=Path(settings.model_path).name)
        self.token_texts = runtime.single_tokens(
            [tag for pair in TAGS.values() for tag in pair] + list(HARMONY_TOKENS[:4]))
        return LoadSucceeded(self._describe(runtime, settings, perf_counter() - started, before))

    @staticmethod
    def _attach_rpc(settings: LoadSettings) -> LoadFailure | None:
        if not settings.rpc_servers:
            return None
        try:
            attach_servers(settings.rpc_servers)
        except RpcError as error:
            return LoadFailure(FailureKind.INVALID, str(error))
        return None

    def _progress_reporter(self):
        last = [-1.0]

        def report(fraction: float) -> None:
            if fraction - last[0] >= PROGRESS_STEP or (fraction >= 1.0 > last[0]):
                last[0] = fraction
                self.connection.send(LoadProgress(min(fraction, 1.0)))
        return report

    def _describe(self, runtime: LlamaRuntime, settings: LoadSettings, seconds: float,
                  before: int) -> LoadedModel:
        after = resident_bytes()
        backend = backend_name(settings.n_gpu_layers)
        offloaded = 0 if backend == "CPU" else offloaded_layers(settings.n_gpu_layers, runtime.n_layers)
        return LoadedModel(
            model_path=settings.model_path, n_ctx=runtime.n_ctx, n_gpu_layers=offloaded,
            n_layers=runtime.n_layers, backend=backend,
            load_seconds=seconds, resident_bytes=after, resident_growth_bytes=after - before,
            gpu_bytes=gpu_bytes(), chat_template_source=self.template.source, settings=settings,
            n_ctx_train=runtime.n_ctx_train, description=runtime.description(),
            n_threads=runtime.n_threads, allocations=self.native_log.allocations(),
            thinking=thinking_support(self.template.text, self.token_texts))

    def _unload(self) -> None:
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None
            self.template = None
            self.token_texts = ()
        self._conversation, self._dropped = (), 0

    # ------------------------------------------------------------------------------------ chat

    def _dropped_before(self, request: ChatRequest) -> int:
        """What the previous turn dropped, when this request continues that conversation."""
        previous = self._conversation
        continues = previous and request.messages[:len(previous)] == previous
        return self._dropped if continues else 0

    def _chat(self, request: ChatRequest) -> None:
        if self.runtime is None:
            self.connection.send(ChatFailed("No model is loaded.", kind="not_loaded"))
            return
        stop_value, request_id = self.stop_value, request.request_id
        turn = ChatTurn(self.runtime, self.template, request,
                        should_stop=lambda: stop_value.value == request_id,
                        send=self.connection.send, at_least_dropped=self._dropped_before(request),
                        token_texts=self.token_texts)
        try:
            turn.run()
            self._conversation, self._dropped = request.messages, turn.dropped_messages
        except PromptTooLong as error:
            self.connection.send(ChatFailed(str(error), kind="prompt_too_long"))
        except ChatTemplateError as error:
            self.connection.send(ChatFailed(str(error), kind="template"))
        except InvalidGrammar as error:
            self.connection.send(ChatFailed(str(error), kind="grammar"))
        except (ContextFull, DecodeFailed) as error:
            log.exception("llama.cpp could not evaluate the prompt")
            self.runtime.forget_from(0)
            self.connection.send(ChatFailed(f"llama.cpp could not evaluate the prompt: {error}."))
        except OSError:
            raise                                   # the pipe broke: the client is gone
        except Exception as error:  # a bug here must not take the loaded model down with it
            log.exception("the answer failed")
            self.runtime.forget_from(0)
            self.connection.send(ChatFailed(f"The engine failed while answering: {error!r}."))
