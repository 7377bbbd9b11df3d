"""Parked conversations: the KV states of conversations that lost their slot, kept in host memory.

When a slot is needed by another conversation, the state of the one it holds is saved
(llama_state_seq_get_data) and parked here with the tokens it holds. When that conversation comes back
(a request whose prompt starts with those tokens), the state is restored into a slot instead of
evaluating the prompt again. The parked states together stay within a byte budget; the least recently
parked or used go first. Host memory only: a state is as large as the conversation's KV cache (23 KB a
token for SmolLM2-135M, about 0.5 MB a token for a 70B model at f16), and copying it to and from RAM
takes milliseconds where a disk would take seconds for the large ones.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import count
from typing import Sequence



def common_prefix_length(cached: Sequence[int], tokens: Sequence[int]) -> int:
    """How many tokens the two sequences share from the start."""
    limit = min(len(tokens), len(cached))
    for index in range(limit):
        if cached[index] != tokens[index]:
            return index
    return limit


@dataclass(frozen=True)
class ParkedState:
    tokens: tuple[int, ...]          # the tokens the state holds, position 0 first
    state: object                    # llama.cpp's serialized sequence (a ctypes byte array)

    @property
    def size(self) -> int:
        return len(self.state)


@dataclass(frozen=True)
class ParkedMatch:
    key: int
    prefix: int                      # tokens of the prompt the parked state already holds


class ParkedStates:
    """An LRU store of parked states within budget_bytes."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = max(0, budget_bytes)
        self._states: OrderedDict[int, ParkedState] = OrderedDict()
        self._keys = count(1)

    @property
    def used_bytes(self) -> int:
        return sum(parked.size for parked in self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def fits(self, size: int) -> bool:
        return size <= self.budget_bytes

    def park(self, tokens: Sequence[int], state: object) -> bool:
        """Keep the state, making room by dropping the least recently used; False if it can never fit."""
        parked = ParkedState(tuple(tokens), state)
        if not self.fits(parked.size):
            return False
        for key in [key for key, old in self._states.items() if _starts_with(parked.tokens, old.tokens)]:
            del self._states[key]             # an older state of the same conversation, now superseded
        while self._states and self.used_bytes + parked.size > self.budget_bytes:
            self._states.popitem(last=False)
        self._states[next(self._keys)] = parked
        return True

    def best_match(self, tokens: Sequence[int]) -> ParkedMatch | None:
        """The parked state sharing the longest prefix with tokens, if any shares one."""
        best: ParkedMatch | None = None
        for key, parked in self._states.items():
            prefix = common_prefix_length(parked.tokens, tokens)
            if prefix and (best is None or prefix > best.prefix):
                best = ParkedMatch(key, prefix)
        return best

    def take(self, key: int) -> ParkedState:
        """Remove and return a parked state (it goes back into a slot)."""
        return self._states.pop(key)

    def clear(self) -> None:
        self._states.clear()


def _starts_with(tokens: tuple[int, ...], prefix: tuple[int, ...]) -> bool:
    return len(prefix) <= len(tokens) and tokens[:len(prefix)] == prefix
