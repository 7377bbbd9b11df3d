"""Parallel slots with the real SmolLM2: several chats stream at once, Stop ends one of them only, and a
conversation that lost its slot to another comes back from its parked KV state instead of being evaluated
again."""
from __future__ import annotations

import threading
import time

import psutil
import pytest

from core.engine.client import EngineClient
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings, TokenText

pytestmark = pytest.mark.model

THREADS = 1                  # see test_engine_chat.py: one thread is steadiest on a shared machine
GREEDY = SamplingSettings(temperature=0.0, max_tokens=40)
QUESTIONS = ("What is the capital of France?", "Name three colours.", "What is 2 + 2?",
             "Say hello in Spanish.")
LONG_ENOUGH = 300            # prompt tokens of the conversation that gets parked


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("slots-home")
        patch.setenv("LLAMADESK_HOME", str(path))
        yield path


def load(smollm2, n_parallel: int) -> EngineClient:
    client = EngineClient()
    client.load(LoadSettings(str(smollm2), n_ctx=2048, n_threads=THREADS, n_parallel=n_parallel))
    return client


def ask(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def answer(events) -> AnswerFinished:
    return next(event for event in events if isinstance(event, AnswerFinished))


def at_once(jobs) -> list:
    """Run the jobs on threads of their own, all started before any is read; their results in order."""
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index, job):
        try:
            results[index] = job()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(error)
    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    if errors:
        raise errors[0]
    return results


@pytest.fixture(scope="module")
def four_slots(smollm2, home):
    client = load(smollm2, 4)
    yield client
    client.close()


def test_four_chats_at_once_give_the_text_each_gives_alone(smollm2, home):
    # Each reference answer comes from a model of its own, so that it too was evaluated from an empty cache
    # (a reused prefix is evaluated in another split, which may round differently: ARCHITECTURE §4).
    alone = []
    for question in QUESTIONS:
        with load(smollm2, 1) as single:
            alone.append(answer(single.chat(ask(question), GREEDY)))
    with load(smollm2, 4) as engine:
        assert engine.slots == 4 and engine.loaded.n_ctx == 2048      # every slot has the whole context
        streams = [engine.chat(ask(question), GREEDY) for question in QUESTIONS]
        together = at_once([lambda stream=stream: answer(stream) for stream in streams])
    assert [a.text for a in together] == [a.text for a in alone]
    assert all(a.text.strip() and a.stats.reused_prefix_tokens == 0 for a in together)


def test_a_fifth_chat_is_refused_in_words_while_four_answer(four_slots):
    streams = [four_slots.chat(ask(question), SamplingSettings(max_tokens=400, ignore_eos=True))
               for question in QUESTIONS]
    started = threading.Barrier(len(streams) + 1)

    def read(stream):
        first = next(stream)
        started.wait()
        return [first, *stream]
    threads = [threading.Thread(target=read, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    started.wait()
    try:
        with pytest.raises(Exception, match="answering 4 chats already"):
            next(four_slots.chat(ask("One more?"), GREEDY))
    finally:
        four_slots.stop()
        for thread in threads:
            thread.join(timeout=60)


def test_stopping_one_slot_leaves_the_others_running(four_slots):
    long = SamplingSettings(temperature=0.7, max_tokens=120, ignore_eos=True)
    streams = [four_slots.chat(ask(question), long) for question in QUESTIONS]
    victim = streams[1]

    def read(stream):
        seen = 0
        for event in stream:
            if isinstance(event, TokenText):
                seen += 1
                if stream is victim and seen == 1:
                    victim.stop()
            if isinstance(event, AnswerFinished):
                return event
    finished = at_once([lambda stream=stream: read(stream) for stream in streams])
    reasons = [f.stats.stop_reason for f in finished]
    assert reasons == ["length", "cancelled", "length", "length"]
    assert finished[1].stats.completion_tokens < 40
    assert all(f.stats.completion_tokens == 120 for i, f in enumerate(finished) if i != 1)


def long_conversation() -> list[dict]:
    facts = " ".join(f"Fact {n}: the box number {n} is painted {('red', 'blue', 'green')[n % 3]}."
                     for n in range(1, 30))
    return [{"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": facts + "\nWhat colour is box 4?"}]


def test_a_conversation_that_lost_its_slot_comes_back_without_evaluating_its_prompt_again(smollm2, home):
    with load(smollm2, 1) as engine:
        chat_a = long_conversation()
        first = answer(engine.chat(chat_a, GREEDY))
        assert first.stats.prompt_tokens > LONG_ENOUGH
        other = answer(engine.chat(ask("Tell me a joke."), GREEDY))   # takes the only slot: A is parked
        assert other.stats.reused_prefix_tokens < 40
        chat_a += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And box 5?"}]
        back = answer(engine.chat(chat_a, GREEDY))
    # everything A held was restored from its parked state; only the new turn was evaluated
    assert back.stats.reused_prefix_tokens >= first.stats.prompt_tokens
    assert back.stats.prompt_tokens - back.stats.reused_prefix_tokens < 40


def new_turn_tokens(smollm2, question: str) -> int:
    """Tokens of the question and the assistant header that follows it in SmolLM2's template (its own tokenizer)."""
    from llama_cpp import Llama
    vocab = Llama(str(smollm2), vocab_only=True, verbose=False)
    return len(vocab.tokenize(f"{question}<|im_end|>\n<|im_start|>assistant\n".encode(), add_bos=False,
                              special=True))


@pytest.mark.parametrize("parked", [False, True], ids=["same slot", "parked and back"])
def test_the_next_question_evaluates_only_its_own_words_and_the_assistant_header(smollm2, home, parked):
    """The end of the answer and the next user header are evaluated while the user reads the answer."""
    with load(smollm2, 1) as engine:
        chat = long_conversation()
        first = answer(engine.chat(chat, GREEDY))
        wait_until_idle(engine)                                        # the user reads the answer
        if parked:
            answer(engine.chat(ask("Tell me a joke."), GREEDY))
        chat += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And box 5?"}]
        back = answer(engine.chat(chat, GREEDY))
    assert back.stats.prompt_tokens - back.stats.reused_prefix_tokens == new_turn_tokens(smollm2, "And box 5?")


def wait_until_idle(engine: EngineClient, quiet_seconds: float = 1.0, limit: float = 120.0) -> None:
    """Until the worker process has used no CPU for quiet_seconds (a prepared conversation gets no reply)."""
    worker = psutil.Process(engine.pid)
    deadline = time.monotonic() + limit
    used = sum(worker.cpu_times()[:2])
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = sum(worker.cpu_times()[:2])
        if now - used < 0.01:
            return
        used = now
    raise AssertionError("the engine did not go idle")


def test_a_conversation_said_to_come_next_is_restored_and_evaluated_before_it_is_sent(smollm2, home):
    with load(smollm2, 1) as engine:
        chat = long_conversation()
        first = answer(engine.chat(chat, GREEDY))
        answer(engine.chat(ask("Tell me a joke."), GREEDY))            # the long chat is parked
        chat += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And box 5?"}]
        engine.prepare(chat)                                           # the user typed the question
        wait_until_idle(engine)
        back = answer(engine.chat(chat, GREEDY))
    assert back.stats.prompt_tokens - back.stats.reused_prefix_tokens == 1     # the one token always evaluated


def test_preparing_gives_way_to_a_request_that_arrives(smollm2, home):
    long_chat = [{"role": "user", "content": " ".join(f"Line {n} of a long text about rivers." for n in range(150))}]
    with load(smollm2, 1) as engine:
        whole = answer(engine.chat(long_chat, SamplingSettings(temperature=0.0, max_tokens=1, seed=3)))
        answer(engine.chat(ask("Tell me a joke."), GREEDY))            # the slot holds something else
        engine.prepare(long_chat)
        started = time.monotonic()
        quick = answer(engine.chat(ask("Say hi."), SamplingSettings(temperature=0.0, max_tokens=1)))
        waited = time.monotonic() - started
    assert quick.stats.completion_tokens == 1
    assert waited < whole.stats.prompt_eval_seconds / 3, (waited, whole.stats.prompt_eval_seconds)


def test_a_seeded_answer_is_the_same_whether_its_prefix_was_parked_or_not(smollm2, home):
    seeded = SamplingSettings(temperature=0.8, seed=11, max_tokens=40)
    with load(smollm2, 1) as engine:
        chat_a = long_conversation()
        answer(engine.chat(chat_a, GREEDY))                       # A's prefix in the slot
        from_slot = answer(engine.chat(chat_a, seeded))
        answer(engine.chat(ask("Tell me a joke."), GREEDY))        # A's state parked
        after_parking = answer(engine.chat(chat_a, seeded))
    with load(smollm2, 1) as fresh:
        cold = answer(fresh.chat(chat_a, seeded))
    assert from_slot.text == after_parking.text == cold.text
    assert from_slot.stats.reused_prefix_tokens == after_parking.stats.reused_prefix_tokens == 0
