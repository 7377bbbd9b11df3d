#!/usr/bin/env python3
"""Parallel slots and parked conversations, through EngineClient with the real SmolLM2 (LLAMADESK_TEST_MODEL).

Part 1, coming back to a long chat. One slot, n_ctx 8192. A ~4,000-token chat is answered; another chat
then takes the slot (the long one's KV state is parked in RAM); the long chat continues with one more short
question; ROUNDS times sent as they are (a server's client resending the history), ROUNDS times as the app
sends them (the chat opened and the question typed first: EngineClient.prepare, then the send). Its time to
first token (the worker's clock: request received -> first token sampled, which includes restoring the parked
state; the median of the returns) is compared with that of a fresh short prompt (a new chat with a question as
short, median of ROUNDS, sent as it is; the same typed first is shown too) and, for scale, with evaluating the
whole long chat again (a seeded request, which is always evaluated from an empty cache). After each answer the
bench waits until the engine is idle, as its reader would read it: what the engine does ahead gives way to any
request that arrives sooner. Target: the return within 2x the fresh short prompt.

Part 2, throughput. Four slots. The same four questions (TOKENS tokens each, past end-of-generation)
one at a time and then all four at once, each on its own thread: tok/s of one chat alone, and the total
tok/s of the four at once vs one after another. Sampled answers (temperature 0.7, no seed) share one
llama_decode per step; seeded ones are decoded alone (ARCHITECTURE §4), shown as a third line.

Prints a table, then RESULT lines. Environment: LLAMADESK_BENCH_ROUNDS (default 5), LLAMADESK_BENCH_TOKENS
(default 96), LLAMADESK_BENCH_THREADS (default: physical cores).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from core.engine.client import EngineClient  # noqa: E402
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings  # noqa: E402

ROUNDS = int(os.environ.get("LLAMADESK_BENCH_ROUNDS", "5"))
TOKENS = int(os.environ.get("LLAMADESK_BENCH_TOKENS", "96"))
THREADS = int(os.environ.get("LLAMADESK_BENCH_THREADS", "0")) or psutil.cpu_count(logical=False) or 1
LONG_CTX = 8192
RETURN_TARGET = 2.0
# A fresh short prompt is a new chat with a question as short as the one that returns to the long chat.
FRESH_QUESTIONS = ("What is rain?", "Name a colour.", "Who was Ada?", "Why is snow white?", "Define a verb.",
                   "What is a bee?", "Count to three.", "Name a river.", "What is a cat?", "Say hello.")
OTHER_CHATS = ("Tell me a joke.", "Tell me a story.")
QUESTIONS = ("Tell me about the sea.", "Describe a forest.", "Explain how bread is made.", "Write about trains.")


def model_path() -> Path:
    explicit = os.environ.get("LLAMADESK_TEST_MODEL")
    if explicit:
        return Path(explicit)
    import platformdirs
    return Path(platformdirs.user_cache_dir("llamadesk", appauthor=False)) / "test-models" / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"


def answer(client: EngineClient, messages, sampling) -> AnswerFinished:
    return next(e for e in client.chat(messages, sampling) if isinstance(e, AnswerFinished))


def long_chat(n_facts: int = 239) -> list[dict]:
    facts = " ".join(f"Fact {n}: box {n} holds {n * 7 % 31} marbles and is painted "
                     f"{('red', 'blue', 'green', 'white')[n % 4]}." for n in range(1, n_facts + 1))
    return [{"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": facts + "\nHow many marbles are in box 12?"}]


def synthetic_model(folder: Path) -> Path:
    """A llama of a 1B model's layer shape (8 of its layers, ~360 MB of q8_0): here the weights, not the
    attention over the long context, are most of a short prompt's cost, as in the models people run."""
    from tests.fixtures.tiny_gguf import write_tiny_model

    return write_tiny_model(folder / "synthetic.gguf", n_layers=8, n_embd=2048, n_ff=5632, n_head=32, n_head_kv=4,
                            context_length=LONG_CTX, tensor_type="q8_0", name="synthetic-llama-8x2048-q8_0")


def coming_back(path: Path, n_facts: int = 239) -> dict:
    """Returns to the long chat as a request simply sent (a server's client resending the history) and as the app
    sends it (the chat opened and the question typed first: EngineClient.prepare), each against new short chats
    sent the same two ways."""
    short = SamplingSettings(temperature=0.0, max_tokens=8, ignore_eos=True)
    rounds = max(ROUNDS, 2)
    with EngineClient() as client:
        client.load(LoadSettings(str(path), n_ctx=LONG_CTX, n_threads=THREADS, n_parallel=1))
        fresh = [read(client, [{"role": "user", "content": question}], short) for question in FRESH_QUESTIONS[:rounds]]
        fresh_prepared = [read(client, prepared(client, [{"role": "user", "content": question}]), short)
                          for question in FRESH_QUESTIONS[-rounds:]]
        chat = long_chat(n_facts)
        first = latest = read(client, chat, short)
        backs, backs_prepared = [], []
        for round_ in range(2 * rounds):
            read(client, [{"role": "user", "content": OTHER_CHATS[round_ % 2]}], short)   # the long chat is parked
            chat += [{"role": "assistant", "content": latest.text},
                     {"role": "user", "content": f"And box {13 + round_}?"}]
            typed_first = round_ % 2 == 1
            latest = read(client, prepared(client, chat) if typed_first else chat, short)
            (backs_prepared if typed_first else backs).append(latest)
        read(client, [{"role": "user", "content": "Tell me a riddle."}], short)      # parked again
        afresh = read(client, chat, SamplingSettings(temperature=0.0, max_tokens=8, seed=1))
    back = _median(backs)
    return {"fresh": _median(fresh).stats.ttft_seconds, "fresh_prepared": _median(fresh_prepared).stats.ttft_seconds,
            "long_prompt": first.stats.prompt_tokens, "back": back.stats.ttft_seconds,
            "back_prepared": _median(backs_prepared).stats.ttft_seconds, "back_reused": back.stats.reused_prefix_tokens,
            "back_prompt": back.stats.prompt_tokens, "afresh": afresh.stats.ttft_seconds}


def read(client: EngineClient, messages, sampling) -> AnswerFinished:
    """An answer, then the pause in which its reader reads it (the engine finishes what it does ahead)."""
    finished = answer(client, messages, sampling)
    until_idle(client)
    return finished


def prepared(client: EngineClient, messages: list[dict]) -> list[dict]:
    """Say the conversation comes next, as the app does while the user types, and wait until the engine is idle."""
    client.prepare(messages)
    until_idle(client)
    return messages


def until_idle(client: EngineClient) -> None:
    worker = psutil.Process(client.pid)
    used = -1.0
    while (now := sum(worker.cpu_times()[:2])) - used > 0.005:
        used = now
        time.sleep(0.3)


def _median(answers: list[AnswerFinished]) -> AnswerFinished:
    return sorted(answers, key=lambda finished: finished.stats.ttft_seconds)[len(answers) // 2]


def throughput(path: Path) -> dict:
    sampled = SamplingSettings(temperature=0.7, max_tokens=TOKENS, ignore_eos=True)
    seeded = SamplingSettings(temperature=0.7, max_tokens=TOKENS, ignore_eos=True, seed=5)
    figures = {}
    with EngineClient() as client:
        client.load(LoadSettings(str(path), n_ctx=2048, n_threads=THREADS, n_parallel=4))
        for name, sampling in (("sampled", sampled), ("seeded", seeded)):
            one_after_another, alone = [], []
            for _ in range(max(1, ROUNDS // 2)):
                started = time.perf_counter()
                for question in QUESTIONS:
                    finished = answer(client, [{"role": "user", "content": question}], sampling)
                    alone.append(finished.stats.tokens_per_second)
                one_after_another.append(len(QUESTIONS) * TOKENS / (time.perf_counter() - started))
            together = [_at_once(client, sampling) for _ in range(max(1, ROUNDS // 2))]
            figures[name] = (max(alone), max(one_after_another), max(together))
    return figures


def _at_once(client: EngineClient, sampling: SamplingSettings) -> float:
    streams = [client.chat([{"role": "user", "content": q}], sampling) for q in QUESTIONS]
    threads = [threading.Thread(target=lambda s=s: [None for _ in s]) for s in streams]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(QUESTIONS) * TOKENS / (time.perf_counter() - started)


def print_coming_back(name: str, back: dict) -> tuple[float, float]:
    print(f"{name}: time to first token, ms (median)")
    rows = (("new short chat, sent", back["fresh"]),
            ("new short chat, typed first (prepared)", back["fresh_prepared"]),
            (f"back to the {back['long_prompt']}-token chat, sent", back["back"]),
            ("back to it, opened and typed first (prepared)", back["back_prepared"]),
            ("back to it, evaluated afresh (seeded)", back["afresh"]))
    for label, seconds in rows:
        print(f"  {label:48s} {seconds * 1000:9.1f}")
    print(f"  (sent: reused {back['back_reused']} of {back['back_prompt']} prompt tokens)")
    sent, typed = back["back"] / back["fresh"], back["back_prepared"] / back["fresh"]
    print(f"  {'return sent / new chat sent':48s} {sent:9.2f}")
    print(f"  {'return typed first / new chat sent':48s} {typed:9.2f}")
    print(f"  {'return typed first / new chat typed first':48s} {back['back_prepared'] / back['fresh_prepared']:9.2f}")
    return sent, typed


def main() -> int:
    import tempfile

    path = model_path()
    back = coming_back(path)
    with tempfile.TemporaryDirectory() as folder:
        synthetic_back = coming_back(synthetic_model(Path(folder)), n_facts=70)   # byte tokens: ~4,000 of them
    speed = throughput(path)
    print(f"{THREADS} thread(s), rounds {ROUNDS}")
    ratios = print_coming_back("SmolLM2-135M Q4_1", back)
    synthetic_ratios = print_coming_back("synthetic llama 8x2048 q8_0", synthetic_back)
    print()
    print(f"{'tok/s, 4 slots':22s} {'1 chat alone':>13s} {'4 one by one':>13s} {'4 at once':>11s} {'at once / one by one':>21s}")
    for name, (alone, sequential, together) in speed.items():
        print(f"{name:22s} {alone:13.1f} {sequential:13.1f} {together:11.1f} {together / sequential:21.2f}")
    sampled_alone, sampled_sequential, sampled_together = speed["sampled"]
    for label, (sent, typed) in (("smollm2", ratios), ("synthetic", synthetic_ratios)):
        for way, value in (("sent", sent), ("typed_first", typed)):
            print(f"RESULT slots_return_ttft_ratio_{label}_{way}={value:.2f} target<={RETURN_TARGET} "
                  f"{'ok' if value <= RETURN_TARGET else 'short'}")
    print(f"RESULT slots_four_at_once_vs_one_by_one={sampled_together / sampled_sequential:.2f} target>=1.0 "
          f"{'ok' if sampled_together >= sampled_sequential else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
