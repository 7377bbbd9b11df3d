"""The engine's slots: llama.cpp sequences, each holding one conversation's KV cache, and the choice of
the slot a new answer runs in.

A new prompt goes to the idle slot that already holds the longest part of it (an empty slot rather than
one whose conversation would have to be parked for a few shared tokens); when a parked state (see
kv_states.py) holds more of it, that state is restored into a slot first. A slot's conversation that
would be overwritten is parked before, unless what would be lost is short (evaluating it again costs
about what parking does). A seeded answer is evaluated from an empty cache anyway (ARCHITECTURE §4), so it
takes the slot that loses least.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import count
from typing import Protocol, Sequence

from core.engine.kv_states import ParkedStates, common_prefix_length

log = logging.getLogger(__name__)

PARK_MIN_TOKENS = 32      # a conversation that would lose fewer tokens than this is not worth parking


class SequenceStore(Protocol):
    """What the slots need of the runtime (LlamaRuntime gives it)."""

    def cached_in(self, seq: int) -> list[int]: ...
    def sequence_state_size(self, seq: int) -> int: ...
    def save_sequence(self, seq: int) -> object: ...
    def restore_sequence(self, seq: int, state: object, tokens: Sequence[int]) -> bool: ...
    def forget_from(self, position: int, seq: int = 0) -> None: ...


@dataclass(frozen=True)
class SlotChoice:
    seq: int
    restored_tokens: int = 0  # tokens brought back from a parked state (0: none restored)
    parked_tokens: int = 0    # tokens of the slot's previous conversation parked to make room


class SlotPool:
    def __init__(self, runtime: SequenceStore, n_slots: int, parked: ParkedStates) -> None:
        self.runtime = runtime
        self.parked = parked
        self._busy = [False] * n_slots
        self._last_used = [0] * n_slots
        self._ticks = count(1)

    @property
    def free(self) -> int:
        return self._busy.count(False)

    def take(self, tokens: Sequence[int], *, seeded: bool) -> SlotChoice:
        """A free slot for a prompt, its cache prepared as well as it can be. Call only while free > 0."""
        idle = [seq for seq, busy in enumerate(self._busy) if not busy]
        if not idle:
            raise RuntimeError("no free slot")
        if seeded:
            choice = self._vacate(self._least_valuable(idle), keep=0)
        else:
            choice = self._best_for(tokens, idle)
        self._busy[choice.seq] = True
        self._last_used[choice.seq] = next(self._ticks)
        return choice

    def release(self, seq: int) -> None:
        self._busy[seq] = False
        self._last_used[seq] = next(self._ticks)

    def forget_parked(self) -> None:
        self.parked.clear()

    # ---------------------------------------------------------------------------------------

    def _best_for(self, tokens: Sequence[int], idle: list[int]) -> SlotChoice:
        prefixes = {seq: common_prefix_length(self.runtime.cached_in(seq), tokens) for seq in idle}

        def worth(seq: int) -> tuple[int, int]:
            """Tokens it saves evaluating, less a parking's cost where it would overwrite enough to park."""
            held = len(self.runtime.cached_in(seq))
            parking = PARK_MIN_TOKENS if held - prefixes[seq] >= PARK_MIN_TOKENS else 0
            return prefixes[seq] - parking, -held
        best_seq = max(idle, key=worth)
        match = self.parked.best_match(tokens)
        if match is not None and match.prefix > prefixes[best_seq]:
            return self._restore(match.key, self._least_valuable(idle), match.prefix)
        if prefixes[best_seq] == 0:
            return self._vacate(self._least_valuable(idle), keep=0)
        return self._vacate(best_seq, keep=prefixes[best_seq])

    def _least_valuable(self, idle: list[int]) -> int:
        """An empty slot, else the least recently used."""
        return min(idle, key=lambda seq: (len(self.runtime.cached_in(seq)) > 0, self._last_used[seq]))

    def _vacate(self, seq: int, *, keep: int) -> SlotChoice:
        """Park the slot's conversation when the new prompt would overwrite enough of it."""
        held = len(self.runtime.cached_in(seq))
        if held - keep < PARK_MIN_TOKENS:
            return SlotChoice(seq)
        if not self.parked.fits(self.runtime.sequence_state_size(seq)):
            return SlotChoice(seq)
        tokens = list(self.runtime.cached_in(seq))
        self.parked.park(tokens, self.runtime.save_sequence(seq))
        log.info("slot %d: parked a conversation of %d tokens (%d parked, %.1f MiB)", seq, held,
                 len(self.parked), self.parked.used_bytes / 2**20)
        return SlotChoice(seq, parked_tokens=held)

    def _restore(self, key: int, seq: int, prefix: int) -> SlotChoice:
        parked = self.parked.take(key)           # first: parking the slot's own state may need the room
        vacated = self._vacate(seq, keep=0)
        if not self.runtime.restore_sequence(seq, parked.state, parked.tokens):
            log.warning("slot %d: llama.cpp refused a parked state; its prompt is evaluated again", seq)
            return vacated
        log.info("slot %d: restored a conversation of %d tokens (%d of them match)", seq, len(parked.tokens), prefix)
        return SlotChoice(seq, restored_tokens=len(parked.tokens), parked_tokens=vacated.parked_tokens)
