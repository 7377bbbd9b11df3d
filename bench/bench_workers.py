#!/usr/bin/env python3
"""Generation speed on this computer alone vs with one and with two workers (llama.cpp RPC on loopback).

Two RPC servers on 127.0.0.1 stand for two worker computers (each lends its CPU with WORKER_THREADS
threads and advertises WORKER_BUDGET). SmolLM2 is loaded through the engine three ways, each with
the same context, sampling and prompt, and HOST_THREADS threads on this computer:

  host only        n_gpu_layers=0, no worker
  host + 1 worker  every offloadable layer on the worker
  host + 2 workers every offloadable layer, split by llama.cpp over both workers by their free memory

tok/s is the engine's decode rate after the first token (AnswerStats.tokens_per_second); each
configuration answers ROUNDS times, the table shows the best and the median (noise from other
processes only slows a run down). "link" is core.machine.workers' probe of each worker (round trip,
slower direction's bandwidth). "predicted" is the planner's figure for the same machine (this
computer plus the workers' devices) where it gives one: the network is not in its speed model yet
(issue #16, phase 2). On loopback the workers share this computer's cores, so this measures the
protocol's cost (a round trip per device boundary per token), not the gain of a second computer.

Prints a table and RESULT lines. Environment: LLAMADESK_TEST_MODEL (default: the set-up's SmolLM2),
LLAMADESK_BENCH_ROUNDS (default 3), LLAMADESK_BENCH_TOKENS (default 64).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.engine.client import EngineClient  # noqa: E402
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings  # noqa: E402
from core.fit.choice import OffloadChoice, plan_for_load  # noqa: E402
from core.gguf.reader import read_model_info  # noqa: E402
from core.machine import bandwidth, hardware, rpc, workers  # noqa: E402

ROUNDS = int(os.environ.get("LLAMADESK_BENCH_ROUNDS", "3"))
TOKENS = int(os.environ.get("LLAMADESK_BENCH_TOKENS", "64"))
WORKER_THREADS = 1
HOST_THREADS = 1  # as each worker: on a shared machine, more threads than free cores spin and stall
WORKER_BUDGET = 2 * 2**30
N_CTX = 2048
PROMPT = [{"role": "user", "content": "Tell me about the history of the bicycle in a few paragraphs."}]
# On loopback each worker costs round trips but adds no memory bandwidth: report the ratio, target only
# that pooling does not collapse generation (one worker keeps at least a quarter of the host-only speed).
POOL_TARGET = 0.25


@dataclass
class Row:
    name: str
    endpoints: tuple[str, ...]
    n_gpu_layers: int
    speeds: list[float]
    predicted: float | None = None

    @property
    def best(self) -> float:
        return max(self.speeds)


def model_path() -> Path:
    explicit = os.environ.get("LLAMADESK_TEST_MODEL")
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llamadesk", appauthor=False)) / "test-models" / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"


def answer_speed(engine: EngineClient) -> float:
    sampling = SamplingSettings(temperature=0.0, max_tokens=TOKENS, seed=1)
    finished = [e for e in engine.chat(PROMPT, sampling) if isinstance(e, AnswerFinished)][0]
    return finished.stats.tokens_per_second


def measure(row: Row, model: Path) -> None:
    with EngineClient() as engine:
        engine.load(LoadSettings(str(model), n_gpu_layers=row.n_gpu_layers, n_ctx=N_CTX, n_threads=HOST_THREADS,
                                  rpc_servers=row.endpoints))
        row.speeds = [answer_speed(engine) for _ in range(ROUNDS)]


def predicted(model: Path, endpoints: tuple[str, ...], n_gpu_layers: int) -> float | None:
    # The host's bandwidth measured (once, cached) and each worker's link timed: the planner's figure counts both.
    machine = hardware.probe()
    machine = replace(machine, host=replace(machine.host, memory_bandwidth_bytes_per_s=bandwidth.host_bandwidth()))
    snapshot = workers.with_workers(machine, workers.probe_workers(endpoints))
    choice = OffloadChoice(context=N_CTX, gpu_layers=n_gpu_layers)
    return plan_for_load(read_model_info(model), snapshot, choice, 0).predicted_tokens_per_second


def main() -> int:
    model = model_path()
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    servers = [rpc.start_local_server(threads=WORKER_THREADS, memory_limit_bytes=WORKER_BUDGET,
                                      log_path=folder / f"worker{i}.log") for i in range(2)]
    try:
        addresses = tuple(server.endpoint for server in servers)
        links = workers.probe_workers(addresses)
        rows = [Row("host only", (), 0, []), Row("host + 1 worker", addresses[:1], -1, []),
                Row("host + 2 workers", addresses, -1, [])]
        for row in rows:
            row.predicted = predicted(model, row.endpoints, row.n_gpu_layers)
            measure(row, model)
    finally:
        for server in servers:
            server.stop()
    print_table(rows, links)
    host = rows[0].best
    for row in rows[1:]:
        ratio = row.best / host
        key = row.name.replace("host + ", "").replace(" ", "_")
        print(f"RESULT tok_s_{key}_vs_host={ratio:.2f} target=>={POOL_TARGET} {'ok' if ratio >= POOL_TARGET else 'short'}")
    return 0


def print_table(rows: list[Row], links: tuple[workers.Worker, ...]) -> None:
    print(f"SmolLM2, {TOKENS} tokens, {ROUNDS} rounds, workers on 127.0.0.1 with {WORKER_THREADS} thread(s) each")
    for worker in links:
        link = worker.link
        print(f"  worker {worker.address}: round trip {link.round_trip_s * 1e6:.0f} us, "
              f"{(link.bandwidth_bytes_per_s or 0) / 1e6:.0f} MB/s (slower direction), "
              f"{worker.free_bytes / 2**30:.1f} GiB offered")
    print(f"{'configuration':<18} {'tok/s best':>10} {'tok/s median':>12} {'predicted':>10}")
    for row in rows:
        guess = f"{row.predicted:.1f}" if row.predicted else "-"
        print(f"{row.name:<18} {row.best:>10.1f} {statistics.median(row.speeds):>12.1f} {guess:>10}")


if __name__ == "__main__":
    sys.exit(main())
