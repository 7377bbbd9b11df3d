"""Fitting a conversation into the context window: keep the system prompt and the newest turns.

When the rendered conversation is longer than the budget (the context minus room for the answer),
the oldest messages after the system prompt go first. A kept conversation never starts with an
assistant message, since many templates insist that a user speaks first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from core.engine.errors import PromptTooLong


@dataclass(frozen=True)
class FittedPrompt:
    prompt: str
    tokens: list[int]
    kept_messages: int
    dropped_messages: int


def answer_reserve(n_ctx: int, max_tokens: int) -> int:
    """Room kept free for the answer: max_tokens, but never more than half the context."""
    return max(1, min(max_tokens, n_ctx // 2))


def fit_conversation(messages: Sequence[dict], *, budget: int,
                     render: Callable[[Sequence[dict]], str],
                     tokenize: Callable[[str], list[int]]) -> FittedPrompt:
    """The longest tail of the conversation (after the system prompt) whose prompt fits budget tokens."""
    head = list(messages[:1]) if messages and messages[0].get("role") == "system" else []
    body = list(messages[len(head):])

    def attempt(dropped: int) -> FittedPrompt:
        kept = _without_leading_assistant(body[dropped:])
        prompt = render(head + kept)
        return FittedPrompt(prompt, tokenize(prompt), len(head) + len(kept),
                            len(body) - len(kept))

    full = attempt(0)
    if len(full.tokens) <= budget:
        return full
    fewest_dropped = _smallest_fitting_drop(attempt, len(body), budget)
    if fewest_dropped is None:
        last = attempt(max(len(body) - 1, 0))
        raise PromptTooLong(
            f"The last message needs {len(last.tokens)} tokens, but the context leaves "
            f"{budget} for the prompt. Shorten the message, lower the answer length, or load the "
            f"model with a larger context.")
    return attempt(fewest_dropped)


def _smallest_fitting_drop(attempt: Callable[[int], FittedPrompt], body_length: int,
                           budget: int) -> int | None:
    """Binary search: dropping more never makes the prompt longer. Always keeps the last message."""
    low, high = 1, body_length - 1
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
