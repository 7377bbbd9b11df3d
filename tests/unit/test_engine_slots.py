"""The slot choice and the parked-state store (pure Python), and the planner counting every slot's KV cache."""
from __future__ import annotations

import pytest

from core.engine.kv_states import ParkedStates, common_prefix_length
from core.engine.slots import PARK_MIN_TOKENS, SlotPool
from core.fit.choice import OffloadChoice
from core.fit.load_preparation import prepare_load
from core.machine.hardware import load_profile
from tests.fixtures.model_zoo import zoo_model


class Sequences:
    """An in-memory sequence store with the runtime's contract: a saved state restores exactly its tokens."""

    BYTES_PER_TOKEN = 10

    def __init__(self, n: int) -> None:
        self.held: list[list[int]] = [[] for _ in range(n)]
        self.saves = 0

    def cached_in(self, seq):
        return self.held[seq]

    def sequence_state_size(self, seq):
        return len(self.held[seq]) * self.BYTES_PER_TOKEN

    def save_sequence(self, seq):
        self.saves += 1
        return bytes(self.sequence_state_size(seq))

    def restore_sequence(self, seq, state, tokens):
        self.held[seq] = list(tokens)
        return True

    def forget_from(self, position, seq=0):
        del self.held[seq][position:]

    def answer(self, seq, prompt):
        """What a turn does once it has its slot: keep the common prefix, hold the prompt."""
        self.held[seq] = list(prompt)


def conversation(tag: int, length: int) -> list[int]:
    return [1, 2, 3] + [tag * 1000 + i for i in range(length)]


def test_a_continuing_conversation_goes_back_to_the_slot_that_holds_it():
    store = Sequences(2)
    pool = SlotPool(store, 2, ParkedStates(1 << 20))
    a, b = conversation(1, 200), conversation(2, 200)
    for prompt in (a, b):
        seq = pool.take(prompt, seeded=False).seq
        store.answer(seq, prompt)
        pool.release(seq)
    assert pool.take(a + [7, 8], seeded=False).seq == store.held.index(a)
    assert store.saves == 0


def test_a_conversation_pushed_out_of_its_slot_is_parked_and_restored_when_it_returns():
    store = Sequences(1)
    pool = SlotPool(store, 1, ParkedStates(1 << 20))
    a, b = conversation(1, 400), conversation(2, 50)
    store.answer(pool.take(a, seeded=False).seq, a)
    pool.release(0)
    pushed = pool.take(b, seeded=False)
    assert pushed.parked_tokens == len(a) and len(pool.parked) == 1
    store.answer(0, b)
    pool.release(0)
    back = pool.take(a + [9], seeded=False)
    assert back.restored_tokens == len(a)
    assert common_prefix_length(store.held[0], a + [9]) == len(a)
    assert len(pool.parked) == 0 or pool.parked.used_bytes <= 50 * Sequences.BYTES_PER_TOKEN + 100


def test_a_short_loss_is_not_worth_parking():
    store = Sequences(1)
    pool = SlotPool(store, 1, ParkedStates(1 << 20))
    a = conversation(1, PARK_MIN_TOKENS // 2)
    store.answer(pool.take(a, seeded=False).seq, a)
    pool.release(0)
    assert pool.take(conversation(2, 10), seeded=False).parked_tokens == 0
    assert len(pool.parked) == 0


def test_a_seeded_answer_takes_an_empty_slot_rather_than_one_holding_a_conversation():
    store = Sequences(2)
    pool = SlotPool(store, 2, ParkedStates(1 << 20))
    a = conversation(1, 300)
    store.answer(pool.take(a, seeded=False).seq, a)
    pool.release(0)
    chosen = pool.take(a, seeded=True)
    assert chosen.seq == 1 and store.held[0] == a and chosen.parked_tokens == 0


def test_parked_states_stay_within_their_budget_dropping_the_least_recent():
    parked = ParkedStates(budget_bytes=1000)
    assert parked.park(conversation(1, 40), bytes(400))
    assert parked.park(conversation(2, 40), bytes(400))
    assert parked.park(conversation(3, 40), bytes(400))
    assert parked.used_bytes <= 1000 and len(parked) == 2
    assert parked.best_match(conversation(1, 40)).prefix == 3       # only the shared start is left of it
    assert parked.best_match(conversation(3, 40) + [5]).prefix == 43
    assert not parked.park(conversation(4, 40), bytes(1001))         # larger than the whole budget


def test_a_newer_state_of_the_same_conversation_replaces_the_older():
    parked = ParkedStates(budget_bytes=10_000)
    parked.park(conversation(1, 40), bytes(400))
    parked.park(conversation(1, 40) + [5, 6, 7], bytes(430))
    assert len(parked) == 1 and parked.used_bytes == 430


@pytest.mark.parametrize("profile", ["desktop-24gb", "cpu-only-16gb"])
def test_the_plan_counts_the_kv_cache_of_every_slot(profile):
    path = zoo_model("llama3.1-8b")
    hardware = load_profile(profile)
    choice = OffloadChoice(gpu_layers=0, context=4096, kv_type="f16", flash_attn=True)

    def kv_bytes(n_parallel):
        prepared = prepare_load(str(path), choice, snapshot=hardware, n_parallel=n_parallel)
        assert prepared.settings.n_ctx == 4096 and prepared.settings.n_parallel == n_parallel
        return sum(device.kv_bytes for device in prepared.plan.devices)
    one, four = kv_bytes(1), kv_bytes(4)
    assert one > 0
    assert four == pytest.approx(4 * one, rel=0.02)
