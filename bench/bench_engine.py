#!/usr/bin/env python3
"""The engine (worker process + pipe + detokenising) against a raw llama-cpp-python loop in one process.

For each model (the real SmolLM2 and a synthetic llama of realistic shape, ~360 MB of q8_0 weights
written into a temporary folder), both sides load the same file with the same threads, context,
batch and sampling, and answer the same rendered prompts. Runs alternate engine / raw, ROUNDS times.
The RESULT ratios compare each side's best run (noise from other processes only ever slows a run
down, so the fastest run is the least disturbed one); the table also shows medians, with ratios and
TTFT differences as medians over the rounds' pairs (both runs of a round see the same load):

  generation tok/s   engine: (tokens - 1) / (last text received - first text received), client clock
                     raw:    (tokens - 1) / (last token - first token) of Llama.generate + detokenize
  TTFT               engine: chat() called -> first TokenText received; raw: tokenize -> first token
  turn 20 vs turn 2  a 20-turn SmolLM2 conversation through the engine: prompt-evaluation seconds
  bandwidth          decode tok/s x bytes read per token (the weights) / measured host bandwidth
  Stop latency       SmolLM2 through the engine, Stop pressed from another thread (as the window does), client
                     clock: during generation (after the first texts), Stop -> last text received and Stop ->
                     the answer's end; during a ~2,600-token prompt evaluation, Stop -> the answer's end

Each engine prompt starts with a different system line, so the engine cannot reuse the previous run's
KV cache beyond the template's first few tokens (raw starts from an empty cache): both evaluate
practically the whole prompt. Host bandwidth is core.machine.bandwidth's copy figure (bytes read + written). Prints a table, then
RESULT lines. `bench_engine.py stop` runs the Stop latency part alone. Environment: LLAMADESK_BENCH_ROUNDS
(default 9), LLAMADESK_BENCH_TOKENS (default 96), LLAMADESK_BENCH_THREADS (default: physical cores).
"""
from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from core.machine.bandwidth import measure_host_bandwidth  # noqa: E402
from core.engine.client import EngineClient  # noqa: E402
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings, TokenText  # noqa: E402

log = logging.getLogger("bench_engine")

ROUNDS = int(os.environ.get("LLAMADESK_BENCH_ROUNDS", "9"))
TOKENS = int(os.environ.get("LLAMADESK_BENCH_TOKENS", "96"))
THREADS = int(os.environ.get("LLAMADESK_BENCH_THREADS", "0")) or psutil.cpu_count(logical=False) or 1
N_CTX = 2048
TURNS = 20
RATIO_TARGET = 0.97
TTFT_TARGET_MS = 50.0
TURN_RATIO_TARGET = 2.0
STOP_TARGET_MS = 200.0
STOP_AFTER_TEXTS = 5  # generation: Stop once this many texts have arrived
STOP_PROMPT_DELAY_SECONDS = 0.3  # prompt evaluation: Stop this long after the request
LONG_PROMPT = " ".join(f"Fact {n}: the number {n} follows {n - 1}." for n in range(1, 180)) + "\nSummarise."
# Both sides generate exactly TOKENS tokens, end-of-generation tokens included (the synthetic model's
# random weights would otherwise stop at random lengths).
SAMPLING = SamplingSettings(temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1,
                            seed=1234, max_tokens=TOKENS, ignore_eos=True)
QUESTION = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
SYNTHETIC_SHAPE = dict(n_layers=8, n_embd=2048, n_ff=5632, n_head=32, n_head_kv=4, context_length=4096,
                       chat_template=None, tensor_type="q8_0", name="synthetic-llama-8x2048-q8_0")


@dataclass
class Run:
    tokens: int
    ttft: float
    tokens_per_second: float


@dataclass
class Side:
    runs: list[Run] = field(default_factory=list)

    def median_rate(self) -> float:
        return statistics.median(run.tokens_per_second for run in self.runs)

    def median_ttft(self) -> float:
        return statistics.median(run.ttft for run in self.runs)

    def best_rate(self) -> float:
        return max(run.tokens_per_second for run in self.runs)

    def best_ttft(self) -> float:
        return min(run.ttft for run in self.runs)


# ------------------------------------------------------------------------------------ models

def smollm2_path() -> Path:
    from tests.conftest import smollm2_path as configured

    path = configured()
    if not path.exists():
        sys.exit(f"The SmolLM2 test model is missing at {path}: run `make test` once to fetch it.")
    return path


def synthetic_model(folder: Path) -> Path:
    from tests.fixtures.tiny_gguf import write_tiny_model

    started = time.perf_counter()
    path = write_tiny_model(folder / "synthetic.gguf", **SYNTHETIC_SHAPE)
    log.info("wrote the synthetic model (%.0f MiB) in %.1f s", path.stat().st_size / 2**20,
             time.perf_counter() - started)
    return path


def messages_for(run: int) -> list[dict]:
    return [{"role": "system", "content": f"Session {run}. You are a helpful storyteller."},
            {"role": "user", "content": QUESTION}]


# ------------------------------------------------------------------------------------ sides

def engine_run(engine: EngineClient, run: int) -> tuple[Run, str]:
    started = time.perf_counter()
    first = last = 0.0
    for event in engine.chat(messages_for(run), SAMPLING):
        now = time.perf_counter()
        if isinstance(event, TokenText) and not first:
            first = now
        if isinstance(event, AnswerFinished):
            last = now
            stats = event.stats
    rate = (stats.completion_tokens - 1) / (last - first) if stats.completion_tokens > 1 else 0.0
    return Run(stats.completion_tokens, first - started, rate), stats.prompt


def raw_run(llm, prompt: str) -> Run:
    llm.reset()
    started = time.perf_counter()
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    first = last = 0.0
    count = 0
    pieces = []                                              # detokenised, as an app would
    for token in llm.generate(tokens, top_k=SAMPLING.top_k, top_p=SAMPLING.top_p, min_p=SAMPLING.min_p,
                              temp=SAMPLING.temperature, repeat_penalty=SAMPLING.repeat_penalty):
        last = time.perf_counter()
        if not first:
            first = last
        pieces.append(llm.detokenize([token]))
        count += 1
        if count >= TOKENS:
            break
    rate = (count - 1) / (last - first) if count > 1 else 0.0
    return Run(count, first - started, rate)


def open_raw(path: Path):
    import llama_cpp

    return llama_cpp.Llama(str(path), n_ctx=N_CTX, n_batch=512, n_ubatch=512, n_threads=THREADS,
                           n_threads_batch=THREADS, seed=SAMPLING.seed, verbose=False)


def raw_prompt_renderer(llm):
    """The engine's own template code, fed with the raw Llama's metadata: both sides see the same text."""
    from core.engine.chat_format import ChatTemplate

    def token_text(token: int) -> str:
        return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    template = ChatTemplate.for_model(llm.metadata.get("tokenizer.chat_template"),
                                      bos_token=token_text(llm.token_bos()), eos_token=token_text(llm.token_eos()))
    return template.render


def compare(name: str, path: Path) -> dict:
    """Alternate engine and raw runs on one model; returns the medians and model facts."""
    engine = EngineClient()
    loaded = engine.load(LoadSettings(str(path), n_ctx=N_CTX, n_threads=THREADS, seed=SAMPLING.seed))
    llm = open_raw(path)
    render = raw_prompt_renderer(llm)
    sides = {"engine": Side(), "raw": Side()}
    engine_run(engine, 0)                                    # warm both up once
    raw_run(llm, render(messages_for(1)))
    for round_number in range(1, ROUNDS + 1):
        order = ("engine", "raw") if round_number % 2 else ("raw", "engine")
        for side in order:
            session = 2 * round_number + (side == "raw")
            if side == "engine":
                sides[side].runs.append(engine_run(engine, session)[0])
            else:
                sides[side].runs.append(raw_run(llm, render(messages_for(session))))
        log.info("%s round %d: engine %.1f tok/s %.0f ms, raw %.1f tok/s %.0f ms", name, round_number,
                 sides["engine"].runs[-1].tokens_per_second, sides["engine"].runs[-1].ttft * 1000,
                 sides["raw"].runs[-1].tokens_per_second, sides["raw"].runs[-1].ttft * 1000)
    import llama_cpp

    weight_bytes = llama_cpp.llama_model_size(llm.model)
    engine.close()
    llm.close()
    return {"name": name, "engine": sides["engine"], "raw": sides["raw"], "weight_bytes": weight_bytes,
            "loaded": loaded}


# ----------------------------------------------------------------------------- conversation

def conversation(path: Path) -> list[float]:
    """Prompt-evaluation seconds of each turn of a 20-turn chat (engine, prefix reuse)."""
    engine = EngineClient()
    engine.load(LoadSettings(str(path), n_ctx=8192, n_threads=THREADS))
    messages = [{"role": "system", "content": "You are a helpful assistant. Answer in two sentences."}]
    seconds = []
    sampling = SamplingSettings(temperature=0.7, seed=7, max_tokens=48)
    for turn in range(TURNS):
        messages.append({"role": "user", "content": f"Tell me one fact about the number {turn + 1}."})
        finished = [e for e in engine.chat(messages, sampling) if isinstance(e, AnswerFinished)][0]
        messages.append({"role": "assistant", "content": finished.text})
        seconds.append(finished.stats.prompt_eval_seconds)
        log.info("turn %d: %d prompt tokens, %d reused, %.3f s", turn + 1, finished.stats.prompt_tokens,
                 finished.stats.reused_prefix_tokens, finished.stats.prompt_eval_seconds)
    full_prompt_tokens = finished.stats.prompt_tokens
    engine.close()
    return seconds + [full_prompt_tokens]


# ------------------------------------------------------------------------------------ Stop


@dataclass
class StopRun:
    to_last_text_ms: float  # 0 when no text arrived after Stop
    to_end_ms: float
    stop_reason: str


def press_stop(engine: EngineClient) -> float:
    """Stop from another thread, as the window does; returns when it was pressed (client clock)."""
    pressed: list[float] = []

    def press() -> None:
        pressed.append(time.perf_counter())
        engine.stop()

    presser = threading.Thread(target=press)
    presser.start()
    presser.join()
    return pressed[0]


def stop_during_generation(engine: EngineClient, run: int) -> StopRun:
    sampling = SamplingSettings(temperature=0.8, seed=run, max_tokens=2000)
    messages = [{"role": "user", "content": f"Essay {run}: write a very long essay about the history of Europe."}]
    texts, pressed, last_text = 0, 0.0, 0.0
    for event in engine.chat(messages, sampling):
        now = time.perf_counter()
        if isinstance(event, TokenText):
            texts += 1
            if pressed:
                last_text = now
            elif texts == STOP_AFTER_TEXTS:
                pressed = press_stop(engine)
        elif isinstance(event, AnswerFinished):
            ended, reason = now, event.stats.stop_reason
    return StopRun((last_text - pressed) * 1000 if last_text else 0.0, (ended - pressed) * 1000, reason)


def stop_during_prompt(engine: EngineClient, run: int) -> StopRun:
    events = engine.chat([{"role": "user", "content": f"Set {run}. {LONG_PROMPT}"}],
                         SamplingSettings(temperature=0.0, max_tokens=48))
    pressed: list[float] = []
    timer = threading.Timer(STOP_PROMPT_DELAY_SECONDS, lambda: (pressed.append(time.perf_counter()), engine.stop()))
    timer.start()
    for event in events:
        if isinstance(event, AnswerFinished):
            ended, finished = time.perf_counter(), event
    timer.join()
    if finished.stats.context_used >= finished.stats.prompt_tokens:
        log.warning("prompt evaluation %d ended before Stop arrived: the figure is a generation stop", run)
    return StopRun(0.0, (ended - pressed[0]) * 1000, finished.stats.stop_reason)


def stop_latency(path: Path) -> dict[str, list[StopRun]]:
    engine = EngineClient()
    engine.load(LoadSettings(str(path), n_ctx=4096, n_threads=THREADS))
    runs: dict[str, list[StopRun]] = {"generation": [], "prompt evaluation": []}
    for run in range(1, ROUNDS + 1):
        runs["generation"].append(stop_during_generation(engine, run))
        runs["prompt evaluation"].append(stop_during_prompt(engine, run))
        log.info("Stop round %d: generation %.1f ms, prompt evaluation %.1f ms", run,
                 runs["generation"][-1].to_end_ms, runs["prompt evaluation"][-1].to_end_ms)
    engine.close()
    return runs


def print_stop_latency(runs: dict[str, list[StopRun]]) -> None:
    print(f"\nStop latency, SmolLM2, {THREADS} threads, {ROUNDS} rounds, client clock (ms): median / worst")
    print(f"{'during':<18} {'Stop -> last text':>18} {'Stop -> answer end':>19} {'cancelled':>10}")
    for during, items in runs.items():
        last = [item.to_last_text_ms for item in items]
        end = [item.to_end_ms for item in items]
        cancelled = sum(item.stop_reason == "cancelled" for item in items)
        print(f"{during:<18} {statistics.median(last):>9.1f} / {max(last):>6.1f} "
              f"{statistics.median(end):>10.1f} / {max(end):>6.1f} {cancelled:>6}/{len(items)}")


def print_stop_results(runs: dict[str, list[StopRun]]) -> None:
    for during, name in (("generation", "stop_generation_ms"), ("prompt evaluation", "stop_prompt_eval_ms")):
        median = statistics.median(item.to_end_ms for item in runs[during])
        result(name, median, f"<={STOP_TARGET_MS:.0f}", median <= STOP_TARGET_MS, ".1f")


# ------------------------------------------------------------------------------------ report

def result(name: str, value: float, target: str, ok: bool | None, unit_format: str = ".3f") -> None:
    verdict = "" if ok is None else (" ok" if ok else " short")
    print(f"RESULT {name}={value:{unit_format}} target={target}{verdict}")


def summarise(item: dict, bandwidth: float) -> None:
    """Adds the RESULT figures (best runs) to a comparison."""
    engine, raw = item["engine"], item["raw"]
    item.update(ratio=engine.best_rate() / raw.best_rate(),
                delta_ms=(engine.best_ttft() - raw.best_ttft()) * 1000,
                fraction=engine.best_rate() * item["weight_bytes"] / bandwidth)


def print_comparison(item: dict) -> None:
    engine, raw = item["engine"], item["raw"]
    pairs = list(zip(engine.runs, raw.runs))                # same round, same machine load
    rows = (("best", engine.best_rate(), raw.best_rate(), item["ratio"], engine.best_ttft(),
             raw.best_ttft(), item["delta_ms"], f"{item['fraction']:.2f}"),
            ("median", engine.median_rate(), raw.median_rate(),
             statistics.median(e.tokens_per_second / r.tokens_per_second for e, r in pairs),
             engine.median_ttft(), raw.median_ttft(),
             statistics.median((e.ttft - r.ttft) * 1000 for e, r in pairs), ""))
    for label, engine_rate, raw_rate, ratio, engine_ttft, raw_ttft, delta, fraction in rows:
        print(f"{item['name']:<10} {item['weight_bytes'] / 2**20:>11.0f} {label:>6} {engine_rate:>12.1f} "
              f"{raw_rate:>10.1f} {ratio:>6.3f} {engine_ttft * 1000:>14.1f} {raw_ttft * 1000:>11.1f} "
              f"{delta:>8.1f} {fraction:>11}")


def print_table(comparisons: list[dict], bandwidth: float) -> None:
    print(f"\nEngine vs raw llama-cpp-python: {THREADS} threads, n_ctx {N_CTX}, {TOKENS} tokens, "
          f"{ROUNDS} alternating rounds; host bandwidth {bandwidth / 1e9:.1f} GB/s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'model':<10} {'weights MiB':>11} {'':>6} {'engine tok/s':>12} {'raw tok/s':>10} {'ratio':>6} "
          f"{'engine TTFT ms':>14} {'raw TTFT ms':>11} {'delta ms':>8} {'BW fraction':>11}")
    for item in comparisons:
        print_comparison(item)
    print("best = each side's fastest run (other processes only ever slow a run down); median = the runs' "
          "medians, with ratio and delta as medians of the rounds' pairs")


def print_conversation(per_turn: list[float], final_tokens: int) -> None:
    print(f"\n{TURNS}-turn SmolLM2 conversation (prefix reuse), prompt evaluation per turn, ms:")
    print(" ".join(f"{seconds * 1000:.0f}" for seconds in per_turn))
    print(f"turn {TURNS} prompt: {final_tokens} tokens\n")


def print_results(comparisons: list[dict], per_turn: list[float]) -> None:
    for item in comparisons:
        result(f"{item['name']}_generation_ratio", item["ratio"], f">={RATIO_TARGET}", item["ratio"] >= RATIO_TARGET)
        result(f"{item['name']}_ttft_delta_ms", item["delta_ms"], f"<={TTFT_TARGET_MS:.0f}",
               item["delta_ms"] <= TTFT_TARGET_MS, ".1f")
    turn_ratio = per_turn[TURNS - 1] / per_turn[1]
    result("turn20_vs_turn2_prompt_eval", turn_ratio, f"<={TURN_RATIO_TARGET}", turn_ratio <= TURN_RATIO_TARGET)
    for item in comparisons:
        result(f"{item['name']}_decode_bandwidth_fraction", item["fraction"], "report", None)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    only_stop = sys.argv[1:] == ["stop"]
    bandwidth = 0.0 if only_stop else measure_host_bandwidth(seconds=1.0)
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-") as folder:
        os.environ.setdefault("LLAMADESK_HOME", folder)
        stops = stop_latency(smollm2_path())
        if only_stop:
            print_stop_latency(stops)
            print_stop_results(stops)
            return 0
        models = [("smollm2", smollm2_path()), ("synthetic", synthetic_model(Path(folder)))]
        comparisons = [compare(name, path) for name, path in models]
        *per_turn, final_tokens = conversation(smollm2_path())
    for item in comparisons:
        summarise(item, bandwidth)
    print_table(comparisons, bandwidth)
    print_conversation(per_turn, final_tokens)
    print_stop_latency(stops)
    print_results(comparisons, per_turn)
    print_stop_results(stops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
