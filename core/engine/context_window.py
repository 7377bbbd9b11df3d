"""Fitting a conversation into the context window: keep the system prompt and the newest turns.

When the rendered conversation is longer than the budget (the context minus room for the answer),
the oldest messages after the system prompt go first. A kept conversation never starts with an
assistant message, since many templates insist that a user speaks first.

Trimming is made to last: it drops enough to leave HEADROOM of the budget free, and a continuing
conversation never drops fewer messages than the turn before. So the kept part starts with the same
messages for several turns, and the KV cache's prefix reuse keeps working once the context is full.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from core.engine.errors import PromptTooLong


HEADROOM = 0.25


@dataclass(frozen=True)
class FittedPrompt:
    prompt: str
    tokens: list[int]
    kept_messages: int
    dropped_messages: int
    messages: tuple[dict, ...] = ()  # the messages rendered into prompt (the system prompt and those kept)


def answer_reserve(n_ctx: int, max_tokens: int) -> int:
    """Room kept free for the answer: max_tokens, but never more than half the context."""
    return max(1, min(max_tokens, n_ctx // 2))


def fit_conversation(messages: Sequence[dict], *, budget: int,
                     render: Callable[[Sequence[dict]], str],
                     tokenize: Callable[[str], list[int]], at_least_dropped: int = 0) -> FittedPrompt:
    """The conversation's prompt within budget tokens: the system prompt and as many recent messages
    as fit, dropping at least `at_least_dropped` of the oldest (what the previous turn dropped)."""
    head = list(messages[:1]) if messages and messages[0].get("role") == "system" else []
    body = list(messages[len(head):])
    at_least_dropped = min(at_least_dropped, max(len(body) - 1, 0))

    def attempt(dropped: int) -> FittedPrompt:
        kept = _without_leading_assistant(body[dropped:])
        prompt = render(head + kept)
        return FittedPrompt(prompt, tokenize(prompt), len(head) + len(kept),
                            len(body) - len(kept), tuple(head + kept))

    as_before = attempt(at_least_dropped)
    if len(as_before.tokens) <= budget:
        return as_before
    lowest = max(at_least_dropped, 1)
    fewest_dropped = (_smallest_fitting_drop(attempt, lowest, len(body), int(budget * (1 - HEADROOM)))
                      or _smallest_fitting_drop(attempt, lowest, len(body), budget))
    if fewest_dropped is None:
        last = attempt(max(len(body) - 1, 0))
        raise PromptTooLong(
            f"The last message needs {len(last.tokens)} tokens, but the context leaves "
            f"{budget} for the prompt. Shorten the message, lower the answer length, or load the "
            f"model with a larger context.")
    return attempt(fewest_dropped)


def _smallest_fitting_drop(attempt: Callable[[int], FittedPrompt], lowest: int, body_length: int,
                           budget: int) -> int | None:
    """Binary search: dropping more never makes the prompt longer. Always keeps the last message."""
    low, high = lowest, body_length - 1
    best = None
    while low <= high:
        middle = (low + high) // 2
        if len(attempt(middle).tokens) <= budget:
            best, high = middle, middle - 1
        else:
            low = middle + 1
    return best


def _without_leading_assistant(messages: list[dict]) -> list[dict]:
    start = 0
    while start < len(messages) - 1 and messages[start].get("role") == "assistant":
        start += 1
    return messages[start:]
