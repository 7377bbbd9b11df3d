"""One answer, inside the worker: fit the conversation, reuse the cached prefix, evaluate, generate.

An answer runs in phases so that the worker can interleave several (one per slot, slots.py): prepare()
renders and fits the prompt; begin(seq) settles what the slot's cache already holds; evaluate_step()
evaluates the prompt a batch at a time and samples the first token; then, token by token, accept() reads
the sampled token and says whether the answer goes on, the worker decodes the token (alone, or with
the other slots' tokens in one llama_decode) and take_next(index) samples the next one. run() drives
the phases for one answer alone.

What the model writes passes through the output splitter (reasoning.py), which sends thinking as
ReasoningText, the answer as TokenText and each tool call as ToolCallMade. Events go out through `send`
(the pipe to the client) in small batches, the first piece at once (time to first token) and then at
most every FLUSH_SECONDS, so the per-token cost is a dictionary lookup, a UTF-8 decode step, the
splitter's scan and a clock read, never a pipe write.
"""
from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Callable

from core.engine.answer_text import AnswerText
from core.engine.chat_format import CHATML_STOPS, ChatTemplate, ChatTemplateError, RenderCancelled
from core.engine.context_window import FittedPrompt, answer_reserve, fit_conversation
from core.engine.errors import PromptTooLong
from core.engine.kv_states import common_prefix_length
from core.engine.llama_runtime import LlamaRuntime
from core.engine.protocol import (AnswerFinished, AnswerStats, ChatRequest, ContextTrimmed,
                                  ReasoningText, SamplingSettings, TokenText)
from core.engine.reasoning import TagSplitter, splitter_for
from core.engine.sampler import RANDOM_SEED, effective_seed, sampler_chain
from core.engine.vision import Vision, has_images, images_in, prepare_messages, refuse_images_without_projector

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.04          # at most ~25 text messages a second
# Between tokens Stop is checked for free. When tokens are slow (a big model on the CPU), llama.cpp's
# abort callback is switched on too, so Stop also ends a token mid-way; it costs ~1 % of a token's
# time, so fast models do without it. "Slow" is judged on a running average, not on one token that a
# busy machine happened to delay.
SLOW_TOKEN_SECONDS = 0.08
TOKEN_TIME_SMOOTHING = 0.25

STOP, LENGTH, CANCELLED = "stop", "length", "cancelled"
# What evaluate_next_opening may evaluate ahead: the end of an answer and a template's turn markers, never a text.
NEXT_OPENING_LIMIT = 64
NEXT_USER_MARK = "\ue000"     # a private-use character: where the next user message's text would begin


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
                 at_least_dropped: int = 0, token_texts: tuple[str, ...] = (), seq: int = 0,
                 vision: Vision | None = None) -> None:
        self.runtime = runtime
        self.seq = seq                           # the llama.cpp sequence (slot) this answer runs in
        self.template = template
        self.request = request
        self.sampling = request.sampling
        self.messages = request.messages
        self.vision, self.vision_prompt = vision, None          # images in the messages: vision.py
        self._images, self._rendered_images = {}, []
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
        self.fitted: FittedPrompt | None = None
        self.reused = 0
        self.finished = False
        self.stop_reason = ""
        self.has_slot = False                    # the worker gave it a slot (seq) it must give back
        self.next_token = -1
        self._pending: list[int] = []            # prompt tokens still to evaluate
        self._chain = None
        self._resources = ExitStack()
        self._token_time = _TokenTime()
        self._last_flush = -1.0

    def _stop_strings(self, sampling: SamplingSettings) -> tuple[str, ...]:
        return sampling.stop + (CHATML_STOPS if self.template.is_fallback else ())

    # ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """The whole answer alone. Raises PromptTooLong or ChatTemplateError before anything is evaluated."""
        if self.prepare() is None:
            return
        self.begin(self.seq)
        while not self.evaluate_step():
            pass
        while not self.finished:
            reason = self.accept()
            if reason is None and not self.decode_alone():
                reason = CANCELLED
            if reason is not None:
                self.finish(reason)
            else:
                self.take_next(-1)

    def prepare(self) -> list[int] | None:
        """Render and fit the conversation: the prompt's tokens, or None when the render was stopped (the
        answer has then finished). Raises PromptTooLong or ChatTemplateError."""
        self.clock.started = perf_counter()
        if self.request.prompt is not None:
            return self._prepare_raw(self.request.prompt)
        self._prepare_images()
        try:
            fitted = fit_conversation(self.messages, budget=self._prompt_budget(), render=self._render,
                                      tokenize=self._tokenize, at_least_dropped=self.at_least_dropped)
        except RenderCancelled:
            self.finished = True
            self.send(AnswerFinished("", self._stats(FittedPrompt("", [], 0, 0), 0, CANCELLED)))
            return None
        self.fitted = fitted
        self.dropped_messages = fitted.dropped_messages
        if fitted.dropped_messages:
            self.send(ContextTrimmed(fitted.dropped_messages, fitted.kept_messages))
        self.splitter = splitter_for(self.template.text, fitted.prompt, token_texts=self.token_texts,
                                     tools_given=bool(self.request.tools))
        return fitted.tokens

    def _prepare_raw(self, prompt: str) -> list[int]:
        """Text to continue as it is: no template, no trimming (a raw prompt has no turns to drop), and the
        output read as plain text (no thinking or tool-call markers are looked for)."""
        tokens = self.runtime.tokenize(prompt, add_bos=self.runtime.adds_bos)
        budget = self._prompt_budget()
        if not tokens:
            raise PromptTooLong("The prompt is empty: give the model some text to continue.")
        if len(tokens) > budget:
            raise PromptTooLong(f"The prompt needs {len(tokens)} tokens, but the context leaves {budget} for "
                                "the prompt. Shorten it, lower the answer length, or load the model with a "
                                "larger context.")
        self.fitted = FittedPrompt(prompt, tokens, 0, 0)
        self.splitter = TagSplitter(None, None, ())
        return tokens

    def begin(self, seq: int) -> None:
        """Run in this slot: keep what its cache holds of the prompt (none for a seeded answer) and build the
        sampler (InvalidGrammar for a grammar that does not parse)."""
        self.seq = seq
        tokens = self.fitted.tokens
        self.reused = self._reuse_prefix(tokens) if not self._seeded() else self._evaluate_afresh()
        self._pending = tokens[self.reused:]
        seed = effective_seed(self.sampling, self.runtime.settings.seed)
        self._chain = self._resources.enter_context(
            sampler_chain(self.sampling, seed=seed, n_vocab=self.runtime.n_vocab, vocab=self.runtime.vocab))

    def _render(self, messages) -> str:
        rendered = self.template.render_prompt(messages, thinking=self.request.thinking,
                                               tools=self.request.tools, should_stop=self.should_stop)
        self.system_prompt_merged = rendered.system_merged
        self._rendered_images = images_in(messages, self._images)
        return rendered.text

    def _prompt_budget(self) -> int:
        return self.runtime.n_ctx - answer_reserve(self.runtime.n_ctx, self.sampling.max_tokens)

    def _tokenize(self, prompt: str) -> list[int]:
        bos_text = self.template.bos_token
        add_bos = self.runtime.adds_bos and not (bos_text and prompt.startswith(bos_text))
        if self._images:
            return self._tokenize_with_images(prompt, add_bos)
        return self.runtime.tokenize(prompt, add_bos=add_bos)

    def _prepare_images(self) -> None:
        """Images on the messages: checked, with a marker in their text for each; refused without a projector."""
        if not has_images(self.messages):
            return
        if self.vision is None:
            refuse_images_without_projector(self.messages, Path(self.runtime.settings.model_path).name)
        self.messages, self._images = prepare_messages(self.messages)

    def _tokenize_with_images(self, prompt: str, add_bos: bool) -> list[int]:
        """Text and image chunks (mtmd); the ids count each image's positions, so the context window counts them."""
        if self.vision_prompt is not None:
            self.vision_prompt.free()
        self.vision_prompt = self.vision.tokenize(prompt, self._rendered_images, add_bos=add_bos)
        self._resources.callback(self.vision_prompt.free)
        return list(self.vision_prompt.ids)

    def _reuse_prefix(self, tokens: list[int]) -> int:
        """Keep the cached tokens this prompt starts with; at least one token is always evaluated."""
        reused = min(self.runtime.common_prefix(tokens, self.seq), len(tokens) - 1)
        if self.vision_prompt is not None:
            reused = self.vision.reusable(self.vision_prompt, reused)
        self.runtime.forget_from(reused, self.seq)
        return reused

    def _seeded(self) -> bool:
        return effective_seed(self.sampling, self.runtime.settings.seed) != RANDOM_SEED

    @property
    def seeded(self) -> bool:
        return self._seeded()

    def _evaluate_afresh(self) -> int:
        """A fixed seed promises the same answer every time. On some CPUs (AVX without AVX2) a cached prefix
        plus a short evaluation gives slightly different logits than one full evaluation, so a seeded answer
        evaluates its whole prompt from an empty cache, in the same batches every time (and the worker
        decodes its tokens alone, never in a batch with other slots' tokens)."""
        self.runtime.forget_from(0, self.seq)
        return 0

    def evaluate_step(self) -> bool:
        """Evaluate the next batch of the prompt; True once the prompt is done and the first token sampled,
        or the answer has finished (Stop during the evaluation)."""
        chunk, self._pending = self._pending[:self.runtime.n_batch], self._pending[self.runtime.n_batch:]
        if not self._evaluate_prompt(chunk):
            self.clock.prompt_done = perf_counter()
            self.finish(CANCELLED)
            return True
        if self._pending:
            return False
        self.clock.prompt_done = perf_counter()
        self.runtime.read_specials(self.splitter.special_texts)
        self.next_token = self.runtime.sample(self._chain)
        self.clock.first_token = self.clock.last_token = perf_counter()
        return True

    @property
    def in_prompt(self) -> bool:
        """Still evaluating its prompt (no token sampled yet)."""
        return not self.finished and not self.clock.first_token

    def _evaluate_prompt(self, tokens: list[int]) -> bool:
        self.runtime.set_abort(self.should_stop)
        try:
            if self.vision_prompt is not None:       # the whole prompt at once: an image is never split
                self._pending = []
                return self.vision.evaluate(self.runtime, self.vision_prompt, self.reused, self.seq)
            return self.runtime.evaluate(tokens, self.seq)
        finally:
            self.runtime.set_abort(None)

    # ---------------------------------------------------------------------------------------

    def accept(self) -> str | None:
        """Read the sampled token into the answer: None while the answer goes on (the token must then be
        decoded, then take_next), else why it ends (call finish)."""
        runtime, token = self.runtime, self.next_token
        if not self.sampling.ignore_eos and runtime.is_end_of_generation(token):
            return STOP
        self.completion_tokens += 1
        runtime.read_specials(self.splitter.special_texts)   # slots may differ in what they read
        piece = self.text.feed(runtime.piece(token))
        now = perf_counter()
        self._token_time.add(now - self.clock.last_token)
        self.clock.last_token = now
        if piece:
            self._unsent.extend(self.splitter.feed(piece))
        if self.splitter.in_reasoning:
            self.reasoning_tokens += 1
            self.clock.last_reasoning = now
        if self._unsent and now - self._last_flush >= FLUSH_SECONDS:
            self._flush()
            self._last_flush = now
        if self.text.stopped:
            return STOP
        if self.completion_tokens >= self.sampling.max_tokens or len(runtime.cached_in(self.seq)) >= runtime.n_ctx:
            return LENGTH
        if self.should_stop():
            return CANCELLED
        self._token_time.became_slow()
        return None

    @property
    def slow(self) -> bool:
        """Tokens come slowly enough that Stop should also end a token mid-way (llama.cpp's abort callback)."""
        return self._token_time.slow

    def decode_alone(self) -> bool:
        """Decode the accepted token in a llama_decode of its own; False if Stop ended it mid-way."""
        if self.slow:
            self.runtime.set_abort(self.should_stop)
        try:
            return self.runtime.evaluate_one(self.next_token, self.seq)
        finally:
            if self.slow:
                self.runtime.set_abort(None)

    def take_next(self, index: int) -> None:
        """Sample the next token from the last decode's index-th output (-1: a decode of its own)."""
        self.next_token = self.runtime.sample(self._chain, index)

    def finish(self, reason: str) -> None:
        """Send what waits and the finished answer; free the sampler."""
        self.finished = True
        self.stop_reason = reason
        self._resources.close()
        self._unsent.extend(self.splitter.feed(self.text.finish()))
        self._unsent.extend(self.splitter.finish())
        self._flush()
        splitter = self.splitter
        self.send(AnswerFinished(splitter.answer, self._stats(self.fitted, self.reused, reason),
                                 reasoning=splitter.reasoning, tool_calls=splitter.tool_calls))

    def evaluate_ahead(self) -> int:
        """Evaluate the prompt without answering it (a PrepareRequest) until should_stop says a request came;
        the tokens evaluated. What was evaluated stays cached, ready for the prompt that shares it."""
        before = len(self.runtime.cached_in(self.seq))
        self._evaluate_giving_way(self._pending, self.should_stop)
        return len(self.runtime.cached_in(self.seq)) - before

    def _evaluate_giving_way(self, tokens: list[int], give_way: Callable[[], bool]) -> None:
        """Work done ahead: llama.cpp's abort callback stops it between graph nodes once give_way() is true (the
        cache keeps what was evaluated)."""
        self.runtime.set_abort(give_way)
        try:
            self.runtime.evaluate(tokens, self.seq)
        finally:
            self.runtime.set_abort(None)

    def evaluate_next_opening(self, give_way: Callable[[], bool]) -> int:
        """After the answer, while the engine is idle: evaluate in the slot what the conversation's next prompt
        holds beyond this one up to the next question's text (the answer as the client sends it back, the
        template's end of turn and the next user header), so that the next question evaluates only its own words
        and the assistant header; stopped when give_way() says a request came. Returns how many tokens were
        evaluated; 0 when there is nothing sure to add."""
        opening = self._next_opening()
        if opening is None:
            return 0
        shared = common_prefix_length(self.runtime.cached_in(self.seq), opening)
        ahead = len(opening) - shared
        if shared < len(self.fitted.tokens) or not 0 < ahead <= NEXT_OPENING_LIMIT \
                or len(opening) > self._prompt_budget():
            return 0        # the history renders differently (e.g. thinking dropped), or too much to guess at
        self.runtime.forget_from(shared, self.seq)
        before = len(self.runtime.cached_in(self.seq))
        self._evaluate_giving_way(opening[shared:], give_way)
        return len(self.runtime.cached_in(self.seq)) - before

    def _next_opening(self) -> list[int] | None:
        """The next prompt's tokens up to where the next user message's text begins; None where unknowable: a raw
        prompt, images (mtmd tokenizes those), tool calls (tool results come next), a seeded or stopped answer."""
        if self.stop_reason not in (STOP, LENGTH) or self.request.prompt is not None or self._images \
                or self.splitter.tool_calls or self._seeded():
            return None
        answer = {"role": "assistant", "content": self.splitter.answer}
        if self.splitter.reasoning:
            answer["reasoning_content"] = self.splitter.reasoning
        messages = [*self.fitted.messages, answer, {"role": "user", "content": NEXT_USER_MARK}]
        try:
            rendered = self.template.render_prompt(messages, thinking=self.request.thinking,
                                                   tools=self.request.tools).text
        except (ChatTemplateError, RenderCancelled) as error:
            log.info("the next turn's opening is not evaluated ahead: %s", error)
            return None
        cut = rendered.find(NEXT_USER_MARK)
        return self._tokenize(rendered[:cut]) if cut > 0 else None

    def abandon(self) -> None:
        """Free the sampler of an answer that failed (the worker reports why)."""
        self.finished = True
        self._resources.close()

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
            context_used=len(self.runtime.cached_in(self.seq)),
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
            image_tokens=tuple(self.vision_prompt.image_tokens) if self.vision_prompt is not None else (),
        )
