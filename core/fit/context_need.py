"""What a message with attachments needs of the loaded model's context, said in one sentence before it is sent.

    need = context_need(tokens, model_info, hardware, choice, margin)
    need.sentence   # "fits the current 8k context"
                    # "needs a 24k context: +1.1 GiB of KV cache, still fits on the GPU — raise the context?"
                    # "too long: the most relevant parts will be used"
    images_left_out(...)  # images alone: "the image needs 16 tokens, but only 0 of the 1k context are left ..."

The answer comes from the planner: the loaded model is planned (core.fit.choice.plan_for_load) at the context the
message needs, rounded up to a 4k step and never past the trained context, and compared with its plan at the
current context. A plan that no longer fits, or a need past the trained context, means the message is too long and
retrieval sends the parts that matter most. The hardware to plan on is what is free *with the loaded model's own
memory given back* (`with_memory_returned`), since a larger context replaces the current load.

TokenCounter counts tokens with the model's own vocabulary (llama.cpp loads the vocabulary alone, no weights).
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, replace

from core.fit.choice import OffloadChoice, plan_for_load, trained_context
from core.fit.planner import DEFAULT_GPU_MARGIN, Plan
from core.engine.protocol import LoadedModel
from core.gguf.reader import ModelInfo, read_model_info
from core.machine import hardware as machine
from core.machine.hardware import HardwareSnapshot
from core.platform.units import format_bytes

log = logging.getLogger(__name__)

CONTEXT_STEP = 4096
FITS, RAISE, TOO_LONG = "fits", "raise", "too_long"
TOO_LONG_SENTENCE = "too long: the most relevant parts will be used"


@dataclass(frozen=True)
class ContextNeed:
    tokens: int               # what the message needs: the chat so far, the question, its documents, the answer's room
    context: int              # the loaded context
    needed_context: int       # the context that holds it, in CONTEXT_STEP steps (0 when none can)
    verdict: str              # FITS | RAISE | TOO_LONG
    extra_kv_bytes: int       # more KV cache at needed_context than now
    sentence: str


def context_label(tokens: int) -> str:
    """8192 -> "8k"; a count that is not whole thousands of 1024 stays a number."""
    return f"{tokens // 1024}k" if tokens >= 1024 and tokens % 1024 == 0 else f"{tokens:,}"


def needed_context(tokens: int) -> int:
    return max(CONTEXT_STEP, math.ceil(tokens / CONTEXT_STEP) * CONTEXT_STEP)


def context_need(tokens: int, model: ModelInfo | None, hardware: HardwareSnapshot | None, choice: OffloadChoice,
                 safety_margin_bytes: int = DEFAULT_GPU_MARGIN) -> ContextNeed:
    """Whether `tokens` fit the context of `choice` (the loaded one), and if not what a larger one costs (the model
    and the machine are read only then)."""
    current = choice.context
    if tokens <= current:
        return ContextNeed(tokens, current, current, FITS, 0, f"fits the current {context_label(current)} context")
    wanted = needed_context(tokens)
    if wanted > trained_context(model):
        return _too_long(tokens, current, f"it needs {context_label(wanted)} tokens of context; "
                                          f"this model reads at most {context_label(trained_context(model))}")
    now = plan_for_load(model, hardware, choice, safety_margin_bytes)
    larger = plan_for_load(model, hardware, replace(choice, context=wanted), safety_margin_bytes)
    if not larger.fits:
        return _too_long(tokens, current, f"a {context_label(wanted)} context does not fit this machine")
    extra = _kv_bytes(larger) - _kv_bytes(now)
    sentence = (f"needs {_article(context_label(wanted))} {context_label(wanted)} context: +{format_bytes(extra)} of KV cache, "
                f"{_placement_change(now, larger)} — raise the context?")
    return ContextNeed(tokens, current, wanted, RAISE, extra, sentence)


def images_left_out(image_tokens: int, images: int, *, context: int, room: int, answer_tokens: int,
                    chat: bool, raisable: bool) -> str:
    """Why images alone cannot go with the message, and what would make room. An image goes whole or not at all
    (retrieval can pick parts of a document, never of a picture). `room`: the tokens the context leaves for them;
    `chat`: the chat so far fills part of it; `raisable`: the planner found a larger context that holds them."""
    subject = "the image needs" if images == 1 else f"the {images} images need"
    kept = f"the answer's {answer_tokens:,} tokens"
    fixes = (["raise the context"] if raisable else []) + ["shorten the answer length"] \
        + (["start a new chat"] if chat else []) + ["remove the image" if images == 1 else "remove an image"]
    return (f"{subject} {image_tokens:,} tokens, but only {max(room, 0):,} of the {context_label(context)} context "
            f"{'is' if max(room, 0) == 1 else 'are'} left after {'the chat so far and ' if chat else ''}{kept} — "
            f"{_either(fixes)}")


def _either(choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def need_for_loaded(tokens: int, loaded: LoadedModel, safety_margin_bytes: int = DEFAULT_GPU_MARGIN) -> ContextNeed:
    """context_need for the model loaded now, planned as it was loaded, on this machine with its memory given back.
    Reads the model's header and probes the machine: off the UI thread."""
    choice = OffloadChoice(gpu_layers=loaded.n_gpu_layers, context=loaded.n_ctx, kv_type=loaded.settings.kv_type,
                           flash_attn=loaded.settings.flash_attn, cpu_expert_layers=loaded.settings.cpu_expert_layers)
    if tokens <= loaded.n_ctx:
        return context_need(tokens, None, None, choice)       # no plan needed: nothing is read
    snapshot = with_memory_returned(machine.probe(), loaded.gpu_bytes, loaded.resident_growth_bytes)
    return context_need(tokens, read_model_info(loaded.model_path), snapshot, choice, safety_margin_bytes)


def _article(label: str) -> str:
    return "an" if label.startswith(("8", "11", "18")) else "a"


def _too_long(tokens: int, current: int, reason: str) -> ContextNeed:
    log.info("attachments too long for the context (%s)", reason)
    return ContextNeed(tokens, current, 0, TOO_LONG, 0, TOO_LONG_SENTENCE)


def _kv_bytes(plan: Plan) -> int:
    return sum(device.kv_bytes for device in plan.devices)


def _placement_change(now: Plan, larger: Plan) -> str:
    on_gpu = any(device.is_gpu_like and device.weights_bytes for device in now.devices)
    if not on_gpu:
        return "still fits in memory"
    moved = now.n_gpu_layers - larger.n_gpu_layers
    if moved <= 0:
        return "still fits on the GPU"
    return f"{moved} layer{'s' if moved != 1 else ''} move{'s' if moved == 1 else ''} off the GPU (slower)"


def with_memory_returned(hardware: HardwareSnapshot, gpu_bytes: int | None, host_bytes: int) -> HardwareSnapshot:
    """The machine as a reload would find it: the loaded model's own memory free again (its GPU memory shared
    over the GPUs by their size, as llama.cpp's default split places layers)."""
    gpus = hardware.gpus
    total = sum(gpu.total_bytes for gpu in gpus) or 1
    if gpu_bytes and gpus:
        gpus = tuple(replace(gpu, free_bytes=min(gpu.total_bytes, gpu.free_bytes + gpu_bytes * gpu.total_bytes // total))
                     for gpu in gpus)
    host = replace(hardware.host, ram_available_bytes=min(hardware.host.ram_total_bytes,
                                                          hardware.host.ram_available_bytes + max(host_bytes, 0)))
    return replace(hardware, gpus=gpus, host=host)


_log_callback = None     # kept alive at module level: llama.cpp holds the pointer


def _quiet_llama_log(native) -> None:
    """The vocabulary load logs ~100 lines to stderr; keep only errors, in our log."""
    global _log_callback
    if _log_callback is None:
        def forward(level, text, _user_data):
            if level == 4 and text:                          # GGML_LOG_LEVEL_ERROR
                log.warning("llama.cpp: %s", text.decode("utf-8", errors="replace").rstrip())
        _log_callback = native.llama_log_callback(forward)
        native.llama_log_set(_log_callback, None)


class TokenCounter:
    """Counts tokens with a model's vocabulary (llama.cpp loads only the vocabulary: milliseconds, no weights).
    Thread-safe; close() frees it."""

    def __init__(self, model_path: str) -> None:
        import llama_cpp.llama_cpp as native

        self._native = native
        self._lock = threading.Lock()
        _quiet_llama_log(native)
        native.llama_backend_init()
        params = native.llama_model_default_params()
        params.vocab_only = True
        self._model = native.llama_model_load_from_file(str(model_path).encode("utf-8"), params)
        if not self._model:
            raise ValueError(f"Could not read the vocabulary of {model_path}.")
        self._vocab = native.llama_model_get_vocab(self._model)

    def __call__(self, text: str) -> int:
        data = text.encode("utf-8")
        with self._lock:
            if self._model is None:
                raise ValueError("The token counter was closed.")
            capacity = len(data) + 8
            tokens = (self._native.llama_token * capacity)()
            count = self._native.llama_tokenize(self._vocab, data, len(data), tokens, capacity, False, False)
            if count < 0:           # never for text (a token covers at least a byte), but the API allows it
                tokens = (self._native.llama_token * -count)()
                count = self._native.llama_tokenize(self._vocab, data, len(data), tokens, -count, False, False)
        return max(count, 0)

    def close(self) -> None:
        with self._lock:
            if self._model is not None:
                self._native.llama_model_free(self._model)
                self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:            # interpreter shutdown: the library may be gone already
            pass
