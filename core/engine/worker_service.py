"""What the worker process does with each request: load a model, answer a chat, shut down.

One WorkerService per process, one model per service, answering up to n_parallel chats at once: each
runs in a slot (slots.py) and the service steps them in turn. A step reads what the pipe holds, starts
waiting requests in free slots, evaluates one batch of each new prompt, then decodes one token of every
answer that is generating: the unseeded ones together in one llama_decode, each seeded one alone. A
batch of several sequences may round differently (a backend's kernels change with the batch size, and
the attention spans as many cells as the longest sequence in it needs), and a seeded answer promises
the same text every time, whatever else runs (ARCHITECTURE §4).

Stop names a request: the client sends a StopRequest, seen between steps, and writes the id into the
shared stop value, which llama.cpp's abort callback reads during a long prompt evaluation.
"""
from __future__ import annotations

import logging
import os
from collections import deque
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
from core.engine.kv_states import ParkedStates
from core.engine.embeddings import embed_texts
from core.engine.protocol import (ChatFailed, ChatReply, ChatRequest, EmbedRequest, Embedded, FailureKind,
                                  LoadedModel, LoadFailed,
                                  LoadProgress, LoadRequest, LoadSettings, LoadSucceeded, PrepareRequest,
                                  SamplingSettings, ShutdownRequest, StopRequest)
from core.engine.slots import SlotPool
from core.engine.errors import ImageRefused
from core.engine.projector_placement import projector_uses_gpu
from core.engine.vision import ProjectorLoadFailed, Vision, has_images
from core.engine.reasoning import HARMONY_TOKENS, TAGS, thinking_support
from core.machine.hardware import process_gpu_bytes
from core.machine.rpc import RpcError, attach_servers

log = logging.getLogger(__name__)

PROGRESS_STEP = 0.02
REMEMBERED_TRIMS = 32        # conversations whose trimming is remembered (see context_window.py)


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
        self.vision: Vision | None = None           # the projector, for a vision model loaded with one
        self.slots: SlotPool | None = None
        self.answers: dict[int, ChatTurn] = {}      # request id -> its answer, running in a slot
        self.waiting: deque[ChatRequest] = deque()  # requests beyond the free slots
        self.stopped: set[int] = set()              # ids of waiting or running requests asked to stop
        self.preparing: PrepareRequest | None = None  # the conversation said to come next, prepared when idle
        self.newest_request = 0                     # the highest request id seen: older hints are stale
        self._trims: list[tuple[tuple[dict, ...], int]] = []   # recent conversations, and messages they dropped

    def serve(self) -> None:
        try:
            while self._read_requests(block=not (self.answers or self.waiting or self.preparing)):
                self._step()
        except (EOFError, OSError):
            log.info("the client is gone")
        self._unload()

    def _read_requests(self, *, block: bool) -> bool:
        """Handle what the pipe holds (waiting for one request when idle); False on shutdown."""
        while block or self.connection.poll(0):
            block = False
            request = self.connection.recv()
            if isinstance(request, ShutdownRequest):
                return False
            self._handle(request)
        return True

    def _request_waiting(self) -> bool:
        """A message is in the pipe: work done ahead (a prepared conversation, the next turn's opening) gives way."""
        return self.connection.poll(0)

    def _handle(self, request) -> None:
        if isinstance(request, LoadRequest):
            self.connection.send(self._load(request.settings))
        elif isinstance(request, ChatRequest):
            self._queue(request)
        elif isinstance(request, PrepareRequest):
            if request.request_id > self.newest_request:
                self.preparing = request            # the latest hint stands for the earlier ones
                self.newest_request = request.request_id
        elif isinstance(request, EmbedRequest):
            self.connection.send(ChatReply(request.request_id, self._embed(request)))
        elif isinstance(request, StopRequest):
            if request.request_id in self.answers or any(r.request_id == request.request_id for r in self.waiting):
                self.stopped.add(request.request_id)
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
        refused = self._load_vision(settings, runtime)
        if refused is not None:
            return refused
        self.runtime = runtime
        self.template = ChatTemplate.for_model(runtime.chat_template(),
                                               bos_token=runtime.token_text(runtime.bos_id),
                                               eos_token=runtime.token_text(runtime.eos_id),
                                               model_name=Path(settings.model_path).name)
        self.token_texts = runtime.single_tokens(
            [tag for pair in TAGS.values() for tag in pair] + list(HARMONY_TOKENS[:4]))
        self.slots = SlotPool(runtime, runtime.n_seq, ParkedStates(settings.parked_kv_bytes))
        return LoadSucceeded(self._describe(runtime, settings, perf_counter() - started, before))

    def _load_vision(self, settings: LoadSettings, runtime: LlamaRuntime) -> LoadFailed | None:
        """Load the projector beside the model (settings.projector_path); on failure the model goes too."""
        if settings.projector_path is None:
            return None
        try:
            self.vision = Vision.load(settings.projector_path, runtime.handles[0], n_threads=runtime.n_threads,
                                      use_gpu=projector_uses_gpu(settings.n_gpu_layers))
        except ProjectorLoadFailed as error:
            runtime.close()
            return LoadFailed(FailureKind.INVALID, str(error))
        return None

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
            projector=self.vision.figures if self.vision is not None else None,
            thinking=thinking_support(self.template.text, self.token_texts))

    def _unload(self) -> None:
        for turn in self.answers.values():
            turn.abandon()
        self.answers.clear()
        self.waiting.clear()
        self.stopped.clear()
        self.preparing = None
        if self.slots is not None:
            self.slots.forget_parked()
            self.slots = None
        if self.vision is not None:                 # before the model it was loaded with
            self.vision.close()
            self.vision = None
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None
            self.template = None
            self.token_texts = ()
        self._trims = []

    # ------------------------------------------------------------------------------------ chat

    def _queue(self, request: ChatRequest) -> None:
        if self.runtime is None:
            self.connection.send(ChatReply(request.request_id,
                                           ChatFailed("No model is loaded.", kind="not_loaded")))
            return
        if self.preparing is not None and self.preparing.request_id < request.request_id:
            self.preparing = None                   # the real request came: the hint about it is spent
        self.newest_request = max(self.newest_request, request.request_id)
        self.waiting.append(request)

    def _embed(self, request: EmbedRequest) -> Embedded | ChatFailed:
        if self.runtime is None:
            return ChatFailed("No model is loaded.", kind="not_loaded")
        if not self.runtime.settings.embeddings:
            return ChatFailed(f"{Path(self.runtime.settings.model_path).name} was loaded for chat, not for "
                              "embeddings.", kind="not_embedding")
        try:
            return embed_texts(self.runtime, request.texts, truncate=request.truncate)
        except PromptTooLong as error:
            return ChatFailed(str(error), kind="prompt_too_long")
        except (ContextFull, DecodeFailed) as error:
            return ChatFailed(f"The embeddings could not be computed: {error}.")

    def _step(self) -> None:
        """Start what can start, evaluate one batch of each new prompt, decode one token of each answer."""
        while self.waiting and self.slots.free:
            self._start(self.waiting.popleft())
        for turn in [turn for turn in self.answers.values() if turn.in_prompt]:
            self._guarded([turn], turn.evaluate_step)
        self._generate_one_token([turn for turn in self.answers.values() if not turn.finished and not turn.in_prompt])
        for request_id in [rid for rid, turn in self.answers.items() if turn.finished]:
            self._end(request_id)
        if self.preparing is not None and not self.answers and not self.waiting:
            request, self.preparing = self.preparing, None
            self._prepare_ahead(request)

    def _prepare_ahead(self, request: PrepareRequest) -> None:
        """Bring a conversation said to come next into a slot and evaluate it, until a message arrives."""
        if self.runtime is None or has_images(request.messages):
            return
        as_chat = ChatRequest(0, request.messages, SamplingSettings(), request.thinking, request.tools)
        turn = ChatTurn(self.runtime, self.template, as_chat, should_stop=self._request_waiting,
                        send=lambda _event: None, at_least_dropped=self._dropped_before(as_chat),
                        token_texts=self.token_texts)
        seq = None
        try:
            tokens = turn.prepare()
            if tokens is None:
                return
            seq = self.slots.take(tokens, seeded=False).seq
            turn.begin(seq)
            log.debug("slot %d: prepared %d tokens ahead", seq, turn.evaluate_ahead())
        except (PromptTooLong, ChatTemplateError) as error:
            log.info("a conversation said to come next was not prepared: %s", error)
        except Exception:  # noqa: BLE001 - work done ahead must never take the engine down
            log.exception("preparing a conversation ahead failed; the slot's cache is dropped")
            if seq is not None:
                self.runtime.forget_from(0, seq)
        finally:
            turn.abandon()
            if seq is not None:
                self.slots.release(seq)

    def _start(self, request: ChatRequest) -> None:
        stop_value, request_id, connection = self.stop_value, request.request_id, self.connection
        stopped = self.stopped
        turn = ChatTurn(self.runtime, self.template, request,
                        should_stop=lambda: request_id in stopped or stop_value.value == request_id,
                        send=lambda event: connection.send(ChatReply(request_id, event)),
                        at_least_dropped=self._dropped_before(request), token_texts=self.token_texts,
                        vision=self.vision)
        self.answers[request_id] = turn

        def start() -> None:
            tokens = turn.prepare()
            if tokens is not None:
                choice = self.slots.take(tokens, seeded=turn.seeded)
                turn.seq, turn.has_slot = choice.seq, True
                turn.begin(choice.seq)
        self._guarded([turn], start)

    def _generate_one_token(self, turns: list[ChatTurn]) -> None:
        together = []
        for turn in turns:
            reason = self._guarded([turn], turn.accept)
            if turn.finished:
                continue
            if reason is not None:
                self._guarded([turn], lambda: turn.finish(reason))
            elif turn.seeded or len(turns) == 1:
                self._guarded([turn], lambda: self._decode_alone(turn))
            else:
                together.append(turn)
        if together:
            together.sort(key=lambda turn: turn.seq)
            self._guarded(together, lambda: self._decode_together(together))

    @staticmethod
    def _decode_alone(turn: ChatTurn) -> None:
        if turn.decode_alone():
            turn.take_next(-1)
        else:
            turn.finish("cancelled")

    def _decode_together(self, turns: list[ChatTurn]) -> None:
        self.runtime.decode_together([(turn.seq, turn.next_token) for turn in turns])
        for index, turn in enumerate(turns):
            turn.take_next(index)

    def _guarded(self, turns: list[ChatTurn], action):
        """Run one step of these answers; a failure ends them with a ChatFailed naming why, never the worker."""
        try:
            return action()
        except OSError:
            raise                                   # the pipe broke: the client is gone
        except PromptTooLong as error:
            self._fail(turns, str(error), "prompt_too_long")
        except ChatTemplateError as error:
            self._fail(turns, str(error), "template")
        except InvalidGrammar as error:
            self._fail(turns, str(error), "grammar")
        except ImageRefused as error:
            self._fail(turns, str(error), "image")
        except (ContextFull, DecodeFailed) as error:
            log.exception("llama.cpp could not evaluate the prompt")
            self._fail(turns, f"llama.cpp could not evaluate the prompt: {error}.", "error", forget=True)
        except Exception as error:  # a bug here must not take the loaded model down with it
            log.exception("the answer failed")
            self._fail(turns, f"The engine failed while answering: {error!r}.", "error", forget=True)
        return None

    def _fail(self, turns: list[ChatTurn], reason: str, kind: str, *, forget: bool = False) -> None:
        for turn in turns:
            if turn.finished:
                continue
            turn.abandon()
            if forget and turn.has_slot:
                self.runtime.forget_from(0, turn.seq)
            turn.send(ChatFailed(reason, kind=kind))

    def _end(self, request_id: int) -> None:
        turn = self.answers.pop(request_id)
        self.stopped.discard(request_id)
        if turn.has_slot:
            self.slots.release(turn.seq)
        if turn.fitted is not None and turn.request.prompt is None:
            self._remember_trim(turn.request.messages, turn.dropped_messages)
        if turn.has_slot and not self.answers and not self.waiting:
            self._evaluate_next_opening(turn)

    def _evaluate_next_opening(self, turn: ChatTurn) -> None:
        """Use idle time to evaluate the conversation's next turn markers (ChatTurn.evaluate_next_opening)."""
        try:
            ahead = turn.evaluate_next_opening(give_way=self._request_waiting)
        except Exception:  # noqa: BLE001 - work done ahead must never take the engine down
            log.exception("slot %d: evaluating the next turn's opening failed; the slot's cache is dropped", turn.seq)
            self.runtime.forget_from(0, turn.seq)
            return
        if ahead:
            log.debug("slot %d: evaluated %d tokens of the next turn ahead", turn.seq, ahead)

    def _remember_trim(self, messages: tuple[dict, ...], dropped: int) -> None:
        self._trims = [entry for entry in self._trims if entry[0] != messages][-(REMEMBERED_TRIMS - 1):]
        self._trims.append((messages, dropped))

    def _dropped_before(self, request: ChatRequest) -> int:
        """What the conversation's previous turn dropped, when this request continues one we answered."""
        best_length, dropped = 0, 0
        for messages, their_dropped in self._trims:
            if len(messages) > best_length and request.messages[:len(messages)] == messages:
                best_length, dropped = len(messages), their_dropped
        return dropped
