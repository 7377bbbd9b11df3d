"""One answer, inside the worker: fit the conversation, reuse the cached prefix, evaluate, generate.

What the model writes passes through the output splitter (reasoning.py), which sends thinking as
ReasoningText, the answer as TokenText and each tool call as ToolCallMade. Events go out through `send`
(the pipe to the client) in small batches, the first piece at once (time to first token) and then at
most every FLUSH_SECONDS, so the per-token cost is a dictionary lookup, a UTF-8 decode step, the
splitter's scan and a clock read, never a pipe write.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Callable

from core.engine.answer_text import AnswerText
from core.engine.chat_format import CHATML_STOPS, ChatTemplate, RenderCancelled
from core.engine.context_window import FittedPrompt, answer_reserve, fit_conversation
from core.engine.llama_runtime import LlamaRuntime
from core.engine.protocol import (AnswerFinished, AnswerStats, ChatRequest, ContextTrimmed,
                                  ReasoningText, SamplingSettings, TokenText)
from core.engine.reasoning import splitter_for
from core.engine.sampler import RANDOM_SEED, effective_seed, sampler_chain

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.04          # at most ~25 text messages a second
# Between tokens Stop is checked for free. When tokens are slow (a big model on the CPU), llama.cpp's
# abort callback is switched on too, so Stop also ends a token mid-way; it costs ~1 % of a token's
# time, so fast models do without it. "Slow" is judged on a running average, not on one token that a
# busy machine happened to delay.
SLOW_TOKEN_SECONDS = 0.08
TOKEN_TIME_SMOOTHING = 0.25

STOP, LENGTH, CANCELLED = "stop", "length", "cancelled"


@dataclass
class _Clock:
    started: float = 0.0
    prompt_done: float = 0.0
    first_token: float = 0.0
    last_token: float = 0.0
    last_reasoning: float = 0.0


class _TokenTime:
    """A running average of the time per token; says once when it crosses SLOW_TOKEN_SECONDS."""

    def __init__(self) -> None:
        self.average = 0.0
        self.count = 0
        self.slow = False

    def add(self, seconds: float) -> None:
        self.count += 1
        if self.count == 2:                     # the first interval is the first token's own piece
            self.average = seconds
        elif self.count > 2:
            self.average += TOKEN_TIME_SMOOTHING * (seconds - self.average)

    def became_slow(self) -> bool:
        if self.slow or self.count < 3 or self.average < SLOW_TOKEN_SECONDS:
            return False
        self.slow = True
        return True


class ChatTurn:
    def __init__(self, runtime: LlamaRuntime, template: ChatTemplate, request: ChatRequest, *,
                 should_stop: Callable[[], bool], send: Callable[[object], None],
                 at_least_dropped: int = 0, token_texts: tuple[str, ...] = ()) -> None:
        self.runtime = runtime
        self.template = template
        self.request = request
        self.sampling = request.sampling
        self.messages = request.messages
        self.token_texts = token_texts           # the family markers this vocabulary holds as tokens
        self.should_stop = should_stop
        self.send = send
        self.text = AnswerText(self._stop_strings(request.sampling))
        self.clock = _Clock()
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self.at_least_dropped = at_least_dropped
        self.dropped_messages = 0
        self.system_prompt_merged = False
        self.splitter = None
        self._unsent: list = []

    def _stop_strings(self, sampling: SamplingSettings) -> tuple[str, ...]:
        return sampling.stop + (CHATML_STOPS if self.template.is_fallback else ())

    # ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Raises PromptTooLong or ChatTemplateError before anything is evaluated."""
        self.clock.started = perf_counter()
        try:
            fitted = fit_conversation(self.messages, budget=self._prompt_budget(), render=self._render,
                                      tokenize=self._tokenize, at_least_dropped=self.at_least_dropped)
        except RenderCancelled:
            self.send(AnswerFinished("", self._stats(FittedPrompt("", [], 0, 0), 0, CANCELLED)))
            return
        self.dropped_messages = fitted.dropped_messages
        if fitted.dropped_messages:
            self.send(ContextTrimmed(fitted.dropped_messages, fitted.kept_messages))
        self.splitter = splitter_for(self.template.text, fitted.prompt, token_texts=self.token_texts,
                                     tools_given=bool(self.request.tools))
        self.runtime.read_specials(self.splitter.special_texts)
        reused = self._reuse_prefix(fitted.tokens) if not self._seeded() else self._evaluate_afresh()
        finished = self._evaluate_prompt(fitted.tokens[reused:])
        self.clock.prompt_done = perf_counter()
        reason = self._generate() if finished else CANCELLED
        self._unsent.extend(self.splitter.feed(self.text.finish()))
        self._unsent.extend(self.splitter.finish())
        self._flush()
        splitter = self.splitter
        self.send(AnswerFinished(splitter.answer, self._stats(fitted, reused, reason),
                                 reasoning=splitter.reasoning, tool_calls=splitter.tool_calls))

    def _render(self, messages) -> str:
        rendered = self.template.render_prompt(messages, thinking=self.request.thinking,
                                               tools=self.request.tools, should_stop=self.should_stop)
        self.system_prompt_merged = rendered.system_merged
        return rendered.text

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

    def _seeded(self) -> bool:
        return effective_seed(self.sampling, self.runtime.settings.seed) != RANDOM_SEED

    def _evaluate_afresh(self) -> int:
        """A fixed seed promises the same answer every time. On some CPUs (AVX without AVX2) a cached prefix
        plus a short evaluation gives slightly different logits than one full evaluation, so a seeded answer
        evaluates its whole prompt from an empty cache, in the same batches every time."""
        self.runtime.forget_from(0)
        return 0

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
        with sampler_chain(self.sampling, seed=seed, n_vocab=runtime.n_vocab, vocab=runtime.vocab) as chain:
            try:
                return self._decode_loop(chain)
            finally:
                runtime.set_abort(None)

    def _decode_loop(self, chain) -> str:
        runtime, text, should_stop, splitter = self.runtime, self.text, self.should_stop, self.splitter
        max_tokens, n_ctx, ignore_eos = self.sampling.max_tokens, runtime.n_ctx, self.sampling.ignore_eos
        last_flush = -1.0
        token_time = _TokenTime()
        token = runtime.sample(chain)
        self.clock.first_token = self.clock.last_token = perf_counter()
        while True:
            if not ignore_eos and runtime.is_end_of_generation(token):
                return STOP
            self.completion_tokens += 1
            piece = text.feed(runtime.piece(token))
            now = perf_counter()
            token_time.add(now - self.clock.last_token)
            self.clock.last_token = now
            if piece:
                self._unsent.extend(splitter.feed(piece))
            if splitter.in_reasoning:
                self.reasoning_tokens += 1
                self.clock.last_reasoning = now
            if self._unsent:
                if now - last_flush >= FLUSH_SECONDS:
                    self._flush()
                    last_flush = now
            if text.stopped:
                return STOP
            if self.completion_tokens >= max_tokens or len(runtime.cached) >= n_ctx:
                return LENGTH
            if should_stop():
                return CANCELLED
            if token_time.became_slow():
                runtime.set_abort(should_stop)
            if not runtime.evaluate_one(token):
                return CANCELLED
            token = runtime.sample(chain)

    def _flush(self) -> None:
        """Send what waits, adjacent texts of one kind joined into one event."""
        if not self._unsent:
            return
        batch: list = []
        for event in self._unsent:
            if batch and type(event) is type(batch[-1]) and isinstance(event, (TokenText, ReasoningText)):
                batch[-1] = type(event)(batch[-1].text + event.text)
            else:
                batch.append(event)
        self._unsent.clear()
        for event in batch:
            self.send(event)

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
            reasoning_tokens=self.reasoning_tokens,
            reasoning_seconds=(clock.last_reasoning - clock.first_token) if self.reasoning_tokens else 0.0,
            system_prompt_merged=self.system_prompt_merged,
        )
