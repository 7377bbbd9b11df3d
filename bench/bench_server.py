#!/usr/bin/env python3
"""The OpenAI-compatible server (`llamadesk-cli serve`, a subprocess, the real openai SDK as client) against the
engine alone (EngineClient in this process), on the real SmolLM2 with the same threads, context, prompt, seed and
sampling, so both sides generate the same tokens. Runs alternate engine / server, ROUNDS times; ratios compare each
side's best run (noise only ever slows a run down).

  generation tok/s   (completion tokens - 1) / (last text - first text), client clock on both sides
  TTFT               engine: chat() called -> first TokenText; server: request sent -> first content chunk
  HTTP overhead      server TTFT - engine TTFT (median over the rounds' pairs)
  4 clients          4 streaming clients at once (queued in phase 1): all their tokens / wall time, against the
                     engine answering the same 4 requests one after another

llama-cpp-python's own server is measured too where its [server] extra is installed; otherwise a note says so.
Environment: LLAMADESK_BENCH_ROUNDS (default 5), LLAMADESK_BENCH_TOKENS (default 64), LLAMADESK_BENCH_THREADS
(default 2), LLAMADESK_TEST_MODEL (the model; default: the set-up's SmolLM2).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROUNDS = int(os.environ.get("LLAMADESK_BENCH_ROUNDS", "5"))
TOKENS = int(os.environ.get("LLAMADESK_BENCH_TOKENS", "64"))
THREADS = int(os.environ.get("LLAMADESK_BENCH_THREADS", "2"))
CONTEXT = 1024
SEED = 11
PROMPT = "Write a short story about a lighthouse keeper and a storm."
MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"


@dataclass(frozen=True)
class Run:
    ttft: float
    tokens_per_second: float
    tokens: int


def rate(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def engine_run(client, prompt: str) -> Run:
    from core.engine.protocol import AnswerFinished, SamplingSettings, TokenText

    sampling = SamplingSettings(temperature=0.8, seed=SEED, max_tokens=TOKENS)
    started = time.perf_counter()
    first = last = 0.0
    for event in client.chat([{"role": "user", "content": prompt}], sampling):
        if isinstance(event, TokenText) and event.text:
            last = time.perf_counter()
            first = first or last
        elif isinstance(event, AnswerFinished):
            return Run(first - started, rate(event.stats.completion_tokens, first, last), event.stats.completion_tokens)
    raise RuntimeError("the engine ended without an answer")


def server_run(client, prompt: str) -> Run:
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    stream = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": prompt}], max_tokens=TOKENS, seed=SEED,
        temperature=0.8, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return Run(first - started, rate(tokens, first, last), tokens)


def start_server(model: Path, home: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "serve", "--port", "0", "--model", str(model), "--ctx", str(CONTEXT),
         "--threads", str(THREADS)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "LLAMADESK_HOME": home, "HF_HUB_OFFLINE": "1"})
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.removeprefix("listening on ").strip()


def concurrent(function, count: int) -> tuple[int, float]:
    """(all tokens, wall seconds) of `count` runs started at once."""
    runs: list[Run] = []
    threads = [threading.Thread(target=lambda i=i: runs.append(function(f"{PROMPT} (#{i})"))) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(run.tokens for run in runs), time.perf_counter() - started


def sequential(function, count: int) -> tuple[int, float]:
    started = time.perf_counter()
    tokens = sum(function(f"{PROMPT} (#{i})").tokens for i in range(count))
    return tokens, time.perf_counter() - started


def peer_note() -> str | None:
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as error:
        return f"llama-cpp-python's own server is not measured: its [server] extra is not installed ({error})."
    return None


def main() -> int:
    import openai

    from tests.conftest import smollm2_path

    model = smollm2_path()
    home = tempfile.mkdtemp(prefix="bench-server-")
    os.environ["LLAMADESK_HOME"] = home                 # both sides plan with the same (default) settings
    from core import settings
    from core.engine.client import EngineClient
    from core.fit.choice import choice_from_settings
    from core.fit.load_preparation import prepare_load

    engine = EngineClient()
    choice = choice_from_settings(settings.load(), CONTEXT)
    engine.load(prepare_load(str(model), choice, threads=THREADS).settings)     # as the server loads it
    process, url = start_server(model, home)
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    try:
        engine_run(engine, PROMPT), server_run(client, PROMPT)           # warm both
        engine_runs, server_runs = [], []
        for _ in range(ROUNDS):
            engine_runs.append(engine_run(engine, PROMPT))
            server_runs.append(server_run(client, PROMPT))
        engine_four = sequential(lambda prompt: engine_run(engine, prompt), 4)
        server_four = concurrent(lambda prompt: server_run(client, prompt), 4)
    finally:
        engine.close()
        process.terminate()
        process.wait(60)

    best_engine = max(r.tokens_per_second for r in engine_runs)
    best_server = max(r.tokens_per_second for r in server_runs)
    overhead = statistics.median(s.ttft - e.ttft for e, s in zip(engine_runs, server_runs))
    four_engine = engine_four[0] / engine_four[1]
    four_server = server_four[0] / server_four[1]
    print(f"{'':28}{'engine':>12}{'server':>12}{'ratio':>8}")
    print(f"{'generation tok/s (best)':28}{best_engine:12.1f}{best_server:12.1f}{best_server / best_engine:8.2f}")
    print(f"{'generation tok/s (median)':28}{statistics.median(r.tokens_per_second for r in engine_runs):12.1f}"
          f"{statistics.median(r.tokens_per_second for r in server_runs):12.1f}")
    print(f"{'TTFT s (median)':28}{statistics.median(r.ttft for r in engine_runs):12.3f}"
          f"{statistics.median(r.ttft for r in server_runs):12.3f}")
    print(f"{'tokens per answer':28}{engine_runs[0].tokens:12d}{server_runs[0].tokens:12d}")
    print(f"{'4 clients, all tokens/s':28}{four_engine:12.1f}{four_server:12.1f}{four_server / four_engine:8.2f}")
    print(f"rounds {ROUNDS}, {TOKENS} tokens, {THREADS} threads, context {CONTEXT}")
    note = peer_note()
    if note:
        print(note)
    ratio = best_server / best_engine
    print(f"RESULT server_vs_engine_tok_s={ratio:.3f} target=>=0.95 {'ok' if ratio >= 0.95 else 'short'}")
    print(f"RESULT server_ttft_overhead_ms={overhead * 1000:.1f} target=<=50 {'ok' if overhead <= 0.05 else 'short'}")
    print(f"RESULT server_4_clients_vs_engine={four_server / four_engine:.3f} target=>=0.95 "
          f"{'ok' if four_server / four_engine >= 0.95 else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
