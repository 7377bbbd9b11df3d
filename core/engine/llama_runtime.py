"""One loaded model and its context, driven through llama.cpp's C API (llama_cpp.llama_cpp).

The low-level API rather than llama_cpp.Llama because the engine needs what Llama does not expose:
the load progress callback, the abort callback (Stop during prompt evaluation) and exact control of
the KV cache for prefix reuse. Lives only inside the worker process.

A context holds settings.n_parallel sequences (slots), each with its own KV stream of n_ctx cells
(kv_unified off: one conversation can never eat another's room, and a sequence's attention never
spans another's cells). Every KV method takes the sequence id; seq 0 is the default, so a
one-slot caller never names it.
"""
from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import llama_cpp.llama_cpp as native

from core.engine.kv_states import common_prefix_length
from core.engine.protocol import LoadSettings, ModelFacts
from core.gguf.kv_types import kv_type_id, needs_flash_attention

log = logging.getLogger(__name__)

ALL_LAYERS = 0x7FFFFFFF
DECODE_ABORTED = 2
DECODE_NO_KV_SLOT = 1

_backend_ready = False


class RuntimeLoadError(Exception):
    """llama.cpp returned no model or no context; stage says which."""

    def __init__(self, stage: str, facts: ModelFacts | None = None) -> None:
        super().__init__(stage)
        self.stage = stage
        self.facts = facts


class ContextFull(Exception):
    """The KV cache has no room for the tokens to evaluate."""


class DecodeFailed(Exception):
    pass


def init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        native.llama_backend_init()
        _backend_ready = True


def flash_attention_type(settings: LoadSettings) -> int:
    if settings.flash_attn or needs_flash_attention(settings.kv_type):
        return native.LLAMA_FLASH_ATTN_TYPE_ENABLED
    return native.LLAMA_FLASH_ATTN_TYPE_DISABLED


@dataclass
class _Callbacks:
    """ctypes callbacks must outlive the C calls that use them."""

    progress: object = None
    abort: object = None


class LlamaRuntime:
    """A llama_model + llama_context pair with a record of which tokens sit in the KV cache."""

    def __init__(self, model, context, settings: LoadSettings, n_threads: int) -> None:
        self._model = model
        self._context = context
        self._memory = native.llama_get_memory(context)
        self._vocab = native.llama_model_get_vocab(model)
        self.settings = settings
        self.n_threads = n_threads
        self.n_ctx = native.llama_n_ctx_seq(context)     # what one sequence (one conversation) may hold
        self.n_seq = native.llama_n_seq_max(context)
        self.n_batch = native.llama_n_batch(context)
        self.n_layers = native.llama_model_n_layer(model)
        self.n_ctx_train = native.llama_model_n_ctx_train(model)
        self._cached: list[list[int]] = [[] for _ in range(self.n_seq)]   # per sequence, position 0 first
        self._pieces: dict[int, bytes] = {}
        self._read_specials: frozenset[str] = frozenset()
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._batch = native.llama_batch_init(max(self.n_batch, self.n_seq), 0, 1)
        self._callbacks = _Callbacks()

    # ---------------------------------------------------------------------------------- load

    @classmethod
    def load(cls, settings: LoadSettings, n_threads: int,
             on_progress: Callable[[float], None] | None = None) -> "LlamaRuntime":
        init_backend()
        callbacks = _Callbacks()
        model = native.llama_model_load_from_file(settings.model_path.encode("utf-8"),
                                                  _model_params(settings, callbacks, on_progress))
        if not model:
            raise RuntimeLoadError("model", _probe_facts(settings.model_path))
        facts = ModelFacts(native.llama_model_n_layer(model), native.llama_model_n_ctx_train(model))
        context = native.llama_init_from_model(model, _context_params(settings, n_threads))
        if not context:
            native.llama_model_free(model)
            raise RuntimeLoadError("context", facts)
        runtime = cls(model, context, settings, n_threads)
        runtime._callbacks = callbacks
        return runtime

    def warm_up(self) -> None:
        """One decode so the weights are paged in and the first answer is not slower than the rest."""
        first = self.bos_id if self.bos_id >= 0 else 0
        native.llama_set_warmup(self._context, True)
        self._fill([(0, first)], outputs=False)
        native.llama_decode(self._context, self._batch)
        native.llama_set_warmup(self._context, False)
        native.llama_synchronize(self._context)
        self.forget_from(0)

    def close(self) -> None:
        if self._batch is not None:
            native.llama_batch_free(self._batch)
            self._batch = None
        if self._context:
            native.llama_free(self._context)
            self._context = None
        if self._model:
            native.llama_model_free(self._model)
            self._model = None

    # ------------------------------------------------------------------------------- metadata

    @property
    def bos_id(self) -> int:
        return native.llama_vocab_bos(self._vocab)

    @property
    def eos_id(self) -> int:
        return native.llama_vocab_eos(self._vocab)

    @property
    def adds_bos(self) -> bool:
        return bool(native.llama_vocab_get_add_bos(self._vocab))

    @property
    def vocab(self):
        return self._vocab

    @property
    def n_vocab(self) -> int:
        return native.llama_vocab_n_tokens(self._vocab)

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = native.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def chat_template(self) -> str | None:
        raw = native.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def description(self) -> str:
        buffer = ctypes.create_string_buffer(256)
        native.llama_model_desc(self._model, buffer, len(buffer))
        return buffer.value.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------------------- tokens

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (native.llama_token * capacity)()
        count = native.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_bos, True)
        if count < 0:
            capacity = -count
            tokens = (native.llama_token * capacity)()
            count = native.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_bos, True)
        return list(tokens[:count])

    def read_specials(self, texts: frozenset[str]) -> None:
        """Special tokens with these texts come out of piece() as their text (the output splitter reads
        them: harmony's channels, DeepSeek's call markers ...); other special tokens stay silent."""
        if texts != self._read_specials:
            self._read_specials = texts
            self._pieces.clear()

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for; a special token's only when it is read (see read_specials). Cached."""
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._render_piece(token)
            if cached and native.llama_vocab_is_control(self._vocab, token) and \
                    cached.decode("utf-8", errors="replace") not in self._read_specials:
                cached = b""
            self._pieces[token] = cached
        return cached

    def _render_piece(self, token: int) -> bytes:
        size = native.llama_token_to_piece(self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, True)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = native.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, True)
            return buffer.raw[:size] if size > 0 else b""
        return self._piece_buffer.raw[:size] if size > 0 else b""

    def single_tokens(self, texts: Sequence[str]) -> tuple[str, ...]:
        """Those of texts that this vocabulary holds as one token (e.g. "<think>", "<|channel|>")."""
        return tuple(text for text in texts if len(self.tokenize(text, add_bos=False)) == 1)

    def is_end_of_generation(self, token: int) -> bool:
        return bool(native.llama_vocab_is_eog(self._vocab, token))

    # ------------------------------------------------------------------------------- KV cache

    @property
    def cached(self) -> list[int]:
        """The tokens in sequence 0's KV cache (the one-slot view)."""
        return self._cached[0]

    @property
    def handles(self):
        """The llama_model and llama_context, for a library that works beside this runtime (mtmd: vision.py)."""
        return self._model, self._context

    def note_evaluated(self, ids: Sequence[int], seq: int = 0) -> None:
        """Record positions another library (mtmd, for an image) decoded at the end of this sequence's cache."""
        self._cached[seq].extend(ids)

    def cached_in(self, seq: int) -> list[int]:
        """The tokens in this sequence's KV cache, position 0 first (read only)."""
        return self._cached[seq]

    def forget_from(self, position: int, seq: int = 0) -> None:
        """Drop the sequence's KV cache from position on (keep the prefix before it)."""
        native.llama_memory_seq_rm(self._memory, seq, position, -1)
        del self._cached[seq][position:]

    def common_prefix(self, tokens: Sequence[int], seq: int = 0) -> int:
        return common_prefix_length(self._cached[seq], tokens)

    def set_abort(self, should_abort: Callable[[], bool] | None) -> None:
        """Let llama.cpp poll should_abort between graph nodes (CPU), or stop polling (None)."""
        if should_abort is None:
            native.llama_set_abort_callback(self._context, native.ggml_abort_callback(), None)
            self._callbacks.abort = None
            return
        callback = native.ggml_abort_callback(lambda _data: should_abort())
        self._callbacks.abort = callback
        native.llama_set_abort_callback(self._context, callback, None)

    def evaluate(self, tokens: Sequence[int], seq: int = 0) -> bool:
        """Feed tokens in n_batch chunks; False if the abort callback stopped it (cache kept consistent)."""
        cached = self._cached[seq]
        if len(cached) + len(tokens) > self.n_ctx:
            raise ContextFull(f"{len(cached) + len(tokens)} tokens do not fit in {self.n_ctx}")
        for start in range(0, len(tokens), self.n_batch):
            chunk = list(tokens[start:start + self.n_batch])
            self._fill([(seq, token) for token in chunk], outputs=False)
            self._batch.logits[len(chunk) - 1] = 1            # the last token's logits: the next one's odds
            status = native.llama_decode(self._context, self._batch)
            if status == DECODE_ABORTED:
                self._resync_after_abort(chunk, seq)
                return False
            self._check(status)
            cached.extend(chunk)
        return True

    def evaluate_one(self, token: int, seq: int = 0) -> bool:
        """The hot path of generation: one token of one sequence."""
        return self.decode_together([(seq, token)])

    def decode_together(self, entries: Sequence[tuple[int, int]]) -> bool:
        """One decode of one token for each (seq, token), sequences in increasing order; the i-th entry's
        logits are then sampled with sample(chain, i). False if the abort callback stopped it."""
        self._fill(entries, outputs=True)
        status = native.llama_decode(self._context, self._batch)
        if status == DECODE_ABORTED:
            for seq, token in entries:
                self._resync_after_abort([token], seq)
            return False
        self._check(status)
        for seq, token in entries:
            self._cached[seq].append(token)
        return True

    def _fill(self, entries: Sequence[tuple[int, int]], *, outputs: bool) -> None:
        """Put (seq, token) pairs into the batch, each at its sequence's next position."""
        batch = self._batch
        next_position: dict[int, int] = {}
        for index, (seq, token) in enumerate(entries):
            position = next_position.get(seq, len(self._cached[seq]))
            next_position[seq] = position + 1
            batch.token[index] = token
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = seq
            batch.logits[index] = 1 if outputs else 0
        batch.n_tokens = len(entries)

    def _check(self, status: int) -> None:
        if status == DECODE_NO_KV_SLOT:
            raise ContextFull("llama.cpp found no KV cache slot")
        if status != 0:
            raise DecodeFailed(f"llama_decode returned {status}")

    def _resync_after_abort(self, chunk: list[int], seq: int) -> None:
        """An aborted decode keeps the ubatches it finished; record exactly those."""
        kept_end = max(native.llama_memory_seq_pos_max(self._memory, seq) + 1, 0)
        self._cached[seq][:] = (self._cached[seq] + chunk)[:kept_end]
        native.llama_memory_seq_rm(self._memory, seq, kept_end, -1)

    # ------------------------------------------------------------------------------- embeddings

    @property
    def embedding_limit(self) -> int:
        """The most tokens one text may have to be embedded: one physical batch, and never more positions than
        the model was trained on (an encoder's position table ends there)."""
        return min(self.n_batch, native.llama_n_ubatch(self._context), self.n_ctx_train or self.n_batch)

    def embed(self, tokens: Sequence[int]) -> list[float]:
        """The pooled vector of one text (at most embedding_limit tokens; a context made with embeddings on)."""
        self.forget_from(0)
        try:
            self._fill([(0, token) for token in tokens], outputs=True)
            self._check(native.llama_decode(self._context, self._batch))
            pooled = native.llama_get_embeddings_seq(self._context, 0)
            if not pooled:
                raise DecodeFailed("llama.cpp made no pooled embedding (the model declares no pooling)")
            return pooled[:native.llama_model_n_embd(self._model)]
        finally:
            native.llama_memory_seq_rm(self._memory, 0, 0, -1)

    def sample(self, sampler, index: int = -1) -> int:
        """The next token from the logits of the last decode's index-th output (-1: its last)."""
        return native.llama_sampler_sample(sampler, self._context, index)

    # ------------------------------------------------------------------------------- saved states

    def sequence_state_size(self, seq: int) -> int:
        return native.llama_state_seq_get_size(self._context, seq)

    def save_sequence(self, seq: int) -> ctypes.Array:
        """The sequence's KV cells as llama.cpp serializes them (a host buffer), to restore into any sequence."""
        size = native.llama_state_seq_get_size(self._context, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = native.llama_state_seq_get_data(self._context, buffer, size, seq)
        if written == 0:
            raise DecodeFailed(f"llama.cpp could not save sequence {seq}")
        return buffer if written == size else (ctypes.c_uint8 * written).from_buffer_copy(buffer)

    def restore_sequence(self, seq: int, state: ctypes.Array, tokens: Sequence[int]) -> bool:
        """Replace the sequence's cache with a saved state holding `tokens`; False (and an empty
        sequence) if llama.cpp refuses it."""
        self.forget_from(0, seq)
        if native.llama_state_seq_set_data(self._context, state, len(state), seq) == 0:
            self.forget_from(0, seq)
            return False
        self._cached[seq][:] = tokens
        return True


def _model_params(settings: LoadSettings, callbacks: _Callbacks,
                  on_progress: Callable[[float], None] | None):
    params = native.llama_model_default_params()
    params.n_gpu_layers = ALL_LAYERS if settings.n_gpu_layers < 0 else settings.n_gpu_layers
    keep_experts_on_host(params, settings.cpu_expert_layers)
    if on_progress is not None:
        def report(fraction: float, _data) -> bool:
            on_progress(float(fraction))
            return True
        callbacks.progress = native.llama_progress_callback(report)
        params.progress_callback = callbacks.progress
    return params


def keep_experts_on_host(params, n_layers: int) -> None:
    """Keep the MoE expert tensors of blocks 0..n_layers-1 in host memory, as llama.cpp's --n-cpu-moe does:
    a NULL-terminated tensor_buft_overrides array of (pattern, CPU buffer type). llama.cpp reads it during
    the load only; the array and its pattern bytes stay alive as an attribute of `params`."""
    if n_layers <= 0:
        return

    class Override(ctypes.Structure):
        _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]

    cpu = ctypes.CFUNCTYPE(ctypes.c_void_p)(("ggml_backend_cpu_buffer_type", native._lib))()
    blocks = "|".join(str(il) for il in range(n_layers))
    pattern = f"blk\\.({blocks})\\.ffn_(up|down|gate|gate_up)_(ch|)exps".encode()
    overrides = (Override * 2)(Override(pattern, cpu))  # the zeroed second entry ends the list
    params.tensor_buft_overrides = ctypes.addressof(overrides)
    params.kept_expert_overrides = overrides


def _context_params(settings: LoadSettings, n_threads: int):
    params = native.llama_context_default_params()
    slots = max(1, settings.n_parallel)
    params.n_ctx = settings.n_ctx * slots          # each slot gets the whole n_ctx (kv_unified stays off)
    params.n_batch = min(settings.n_batch, settings.n_ctx)
    params.n_ubatch = min(settings.n_ubatch, params.n_batch)
    params.n_seq_max = slots
    params.kv_unified = False
    params.n_threads = n_threads
    params.n_threads_batch = n_threads
    params.flash_attn_type = flash_attention_type(settings)
    params.type_k = kv_type_id(settings.kv_type)
    params.type_v = kv_type_id(settings.kv_type)
    params.no_perf = True
    params.embeddings = settings.embeddings
    return params


def _probe_facts(path: str) -> ModelFacts | None:
    """Layer count and trained context from the header alone (vocab-only load), or None."""
    params = native.llama_model_default_params()
    params.vocab_only = True
    model = native.llama_model_load_from_file(path.encode("utf-8"), params)
    if not model:
        return None
    try:
        return ModelFacts(native.llama_model_n_layer(model), native.llama_model_n_ctx_train(model))
    finally:
        native.llama_model_free(model)
