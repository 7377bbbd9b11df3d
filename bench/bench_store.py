"""Chat store benchmark: stream a 500-message chat into SQLite, load it back, list 1,000 conversations.

Run: python bench/bench_store.py [--keep DIR]. Uses a throw-away LLAMADESK_HOME unless --keep is given.
Prints a table, then one `RESULT name=value target=... ok|short` line per target.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.chat.conversation import Conversation, MessageStats  # noqa: E402
from core.chat.store import ChatStore  # noqa: E402

TURNS = 250                      # 250 questions + 250 answers = 500 messages
DELTAS_PER_ANSWER = 120          # about one token each
DELTA = "word "
CONVERSATIONS = 1_000
REPEATS = 15


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None  # upper bound

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "ok" if self.value < self.target else "short"


def median_ms(action, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def stream_long_chat(store: ChatStore) -> tuple[str, float, float]:
    """Returns the conversation id, the total write time (s) and the mean append_answer cost (µs)."""
    conversation = store.create_conversation(system_prompt="You are a helpful assistant.")
    append_seconds = 0.0
    start = time.perf_counter()
    for turn in range(TURNS):
        question = store.add_message(conversation.id, "user", f"Question {turn}: tell me something new.")
        answer = store.begin_answer(conversation.id, question.id)
        for _ in range(DELTAS_PER_ANSWER):
            before = time.perf_counter()
            store.append_answer(answer, DELTA)
            append_seconds += time.perf_counter() - before
        store.finish_answer(answer, MessageStats(0.1, 50.0, 100 + turn, DELTAS_PER_ANSWER, "stop"))
    total = time.perf_counter() - start
    return conversation.id, total, append_seconds / (TURNS * DELTAS_PER_ANSWER) * 1e6


def add_many_conversations(store: ChatStore, count: int) -> None:
    for number in range(count):
        conversation = Conversation(title=f"Chat number {number}")
        conversation.add("user", f"Question {number} about topic{number % 37}")
        conversation.add("assistant", "An answer of a few words. " * 20)
        store.save_conversation(conversation)


def measure(home: Path) -> list[Figure]:
    os.environ["LLAMADESK_HOME"] = str(home)
    with ChatStore() as store:
        chat_id, write_s, append_us = stream_long_chat(store)
        loaded = store.load_conversation(chat_id)
        assert len(loaded.messages) == 2 * TURNS
        load_ms = median_ms(lambda: store.load_conversation(chat_id))
        add_many_conversations(store, CONVERSATIONS - 1)
        list_ms = median_ms(lambda: store.list_conversations())
        search_ms = median_ms(lambda: store.list_conversations("topic5"))
        fts = store.uses_full_text_search
    open_ms = median_ms(lambda: ChatStore().close(), repeats=5)
    size_mb = store.path.stat().st_size / 2**20
    return [
        Figure("stream_write_500_messages_s", write_s, "s"),
        Figure("append_answer_mean_us", append_us, "µs", target=100.0),
        Figure("load_500_message_chat_ms", load_ms, "ms", target=50.0),
        Figure("list_1000_conversations_ms", list_ms, "ms", target=50.0),
        Figure(f"search_1000_conversations_{'fts5' if fts else 'like'}_ms", search_ms, "ms", target=50.0),
        Figure("open_database_ms", open_ms, "ms", target=200.0),
        Figure("database_size_mb", size_mb, "MiB"),
    ]


def print_report(figures: list[Figure]) -> None:
    print(f"{'measure':<40} {'value':>12} {'target':>10}  verdict")
    for figure in figures:
        target = f"< {figure.target:g}" if figure.target is not None else ""
        print(f"{figure.name:<40} {figure.value:>9.2f} {figure.unit:<3} {target:>9}  {figure.verdict}")
    print()
    for figure in figures:
        if figure.target is not None:
            print(f"RESULT {figure.name}={figure.value:.2f} target=<{figure.target:g} {figure.verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="use (and keep) this LLAMADESK_HOME")
    arguments = parser.parse_args()
    if arguments.keep:
        figures = measure(arguments.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="llamadesk-bench-") as home:
            figures = measure(Path(home))
    print_report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
