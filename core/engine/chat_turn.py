"""One answer, inside the worker: fit the conversation, reuse the cached prefix, evaluate, generate.

Events go out through `send` (the pipe to the client). Text is sent in small batches, the first
piece at once (time to first token) and then at most every FLUSH_SECONDS, so the per-token cost is
a dictionary lookup, a UTF-8 decode step and a clock read, never a pipe write.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Callable

from core.engine.answer_text import AnswerText
from core.engine.chat_format import CHATML_STOPS, ChatTemplate
from core.engine.context_window import answer_reserve, fit_conversation
from core.engine.llama_runtime import LlamaRuntime
from core.engine.protocol import (AnswerFinished, AnswerStats, ChatRequest, ContextTrimmed,
                                  SamplingSettings, TokenText)
from core.engine.sampler import effective_seed, sampler_chain

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.04          # at most ~25 text messages a second
SLOW_TOKEN_SECONDS = 0.05     # tokens slower than this get the abort callback, so Stop stays prompt

STOP, LENGTH, CANCELLED = "stop", "length", "cancelled"


@dataclass
class _Clock:
    started: float = 0.0
    prompt_done: float = 0.0
    first_token: float = 0.0
    last_token: float = 0.0


class ChatTurn:
    def __init__(self, runtime: LlamaRuntime, template: ChatTemplate, request: ChatRequest, *,
                 should_stop: Callable[[], bool], send: Callable[[object], None]) -> None:
        self.runtime = runtime
        self.template = template
        self.sampling = request.sampling
        self.messages = request.messages
        self.should_stop = should_stop
        self.send = send
        self.text = AnswerText(self._stop_strings(request.sampling))
        self.clock = _Clock()
        self.completion_tokens = 0
        self._unsent: list[str] = []

    def _stop_strings(self, sampling: SamplingSettings) -> tuple[str, ...]:
        return sampling.stop + (CHATML_STOPS if self.template.is_fallback else ())

    # ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Raises PromptTooLong or ChatTemplateError before anything is evaluated."""
        self.clock.started = perf_counter()
        fitted = fit_conversation(self.messages, budget=self._prompt_budget(),
                                  render=self.template.render, tokenize=self._tokenize)
        if fitted.dropped_messages:
            self.send(ContextTrimmed(fitted.dropped_messages, fitted.kept_messages))
        reused = self._reuse_prefix(fitted.tokens)
        finished = self._evaluate_prompt(fitted.tokens[reused:])
        self.clock.prompt_done = perf_counter()
        reason = self._generate() if finished else CANCELLED
        self._flush(self.text.finish())
        self.send(AnswerFinished(self.text.text, self._stats(fitted, reused, reason)))

    def _prompt_budget(self) -> int:
        return self.runtime.n_ctx - answer_reserve(self.runtime.n_ctx, self.sampling.max_tokens)

    def _tokenize(self, prompt: str) -> list[int]:
        bos_text = self.template.bos_token
        add_bos = self.runtime.adds_bos and not (bos_text and prompt.startswith(bos_text))
        return self.runtime.tokenize(prompt, add_bos=add_bos)

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Keep the cached tokens this prompt starts with; at least one token is always evaluated."""
        reused = min(self.runtime.common_prefix(tokens), len(tokens) - 1)
        self.runtime.forget_from(reused)
        return reused

    def _evaluate_prompt(self, tokens: list[int]) -> bool:
        self.runtime.set_abort(self.should_stop)
        try:
            return self.runtime.evaluate(tokens)
        finally:
            self.runtime.set_abort(None)

    # ---------------------------------------------------------------------------------------

    def _generate(self) -> str:
        runtime = self.runtime
        seed = effective_seed(self.sampling, runtime.settings.seed)
        with sampler_chain(self.sampling, seed=seed, n_vocab=runtime.n_vocab) as chain:
            try:
                return self._decode_loop(chain)
            finally:
                runtime.set_abort(None)

    def _decode_loop(self, chain) -> str:
        runtime, text, should_stop = self.runtime, self.text, self.should_stop
        max_tokens, n_ctx = self.sampling.max_tokens, runtime.n_ctx
        last_flush = previous = -1.0
        abortable = False
        token = runtime.sample(chain)
        self.clock.first_token = self.clock.last_token = perf_counter()
        while True:
            if runtime.is_end_of_generation(token):
                return STOP
            self.completion_tokens += 1
            piece = text.feed(runtime.piece(token))
            now = self.clock.last_token = perf_counter()
            if piece:
                self._unsent.append(piece)
                if now - last_flush >= FLUSH_SECONDS:
                    self._flush()
                    last_flush = now
            if text.stopped:
                return STOP
            if self.completion_tokens >= max_tokens or len(runtime.cached) >= n_ctx:
                return LENGTH
            if should_stop():
                return CANCELLED
            if not abortable and previous > 0 and now - previous > SLOW_TOKEN_SECONDS:
                runtime.set_abort(should_stop)
                abortable = True
            previous = now
            if not runtime.evaluate_one(token):
                return CANCELLED
            token = runtime.sample(chain)

    def _flush(self, extra: str = "") -> None:
        if extra:
            self._unsent.append(extra)
        if self._unsent:
            self.send(TokenText("".join(self._unsent)))
            self._unsent.clear()

    # ---------------------------------------------------------------------------------------

    def _stats(self, fitted, reused: int, reason: str) -> AnswerStats:
        clock = self.clock
        evaluated = len(fitted.tokens) - reused
        prompt_seconds = clock.prompt_done - clock.started
        generated = self.completion_tokens
        decode_seconds = clock.last_token - clock.first_token if generated > 1 else 0.0
        return AnswerStats(
            prompt_tokens=len(fitted.tokens),
            completion_tokens=generated,
            ttft_seconds=(clock.first_token - clock.started) if clock.first_token else 0.0,
            prompt_tokens_per_second=evaluated / prompt_seconds if prompt_seconds > 0 else 0.0,
            tokens_per_second=(generated - 1) / decode_seconds if decode_seconds > 0 else 0.0,
            context_used=len(self.runtime.cached),
            context_size=self.runtime.n_ctx,
            stop_reason=reason,
            reused_prefix_tokens=reused,
            dropped_messages=fitted.dropped_messages,
            prompt_eval_seconds=prompt_seconds,
            generation_seconds=(clock.last_token - clock.prompt_done) if clock.first_token else 0.0,
            prompt=fitted.prompt,
        )
