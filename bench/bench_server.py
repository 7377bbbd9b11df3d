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

The peer, llama-cpp-python's own `llama_cpp.server`, runs from the bench-only environment .bench-venv (made by
`tools/dev.py bench`, never in .venv) with the same model, context, batch, threads, flash attention and seed, and
gets the same requests through the same SDK in the same rounds. It sends no usage while streaming, so its tokens
are its content chunks (one token each). It serves one request at a time (a global lock); it runs with
--interrupt_requests false so that its 4 clients queue, as ours do, instead of each new request ending the one
streaming. When the peer cannot be started or fails, a note says why and our figures are printed all the same.

Environment: LLAMADESK_BENCH_ROUNDS (default 5), LLAMADESK_BENCH_TOKENS (default 64), LLAMADESK_BENCH_THREADS
(default 2), LLAMADESK_TEST_MODEL (the model; default: the set-up's SmolLM2), LLAMADESK_BENCH_PEER_PYTHON (the
python of the peer's environment; default .bench-venv's).
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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
BATCH = 512                    # what prepare_load gives our side; the peer is told the same
PEER_START_TIMEOUT_S = 120


def prompt_for(label: str) -> str:
    """PROMPT with its own opening: llama_cpp.server reuses the KV cache of the prompt before whatever it is sent
    (seeded or not), while our engine evaluates a seeded prompt afresh, so an identical prompt every round would
    time the peer's cache instead of a prompt. The peer still reuses the chat template's opening."""
    return f"{label}. {PROMPT}"


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
    """One streamed answer; its tokens are the usage's count, or the content chunks where no usage comes."""
    started = time.perf_counter()
    first = last = 0.0
    chunks = usage_tokens = 0
    stream = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": prompt}], max_tokens=TOKENS, seed=SEED,
        temperature=0.8, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            chunks += 1
        if chunk.usage is not None:
            usage_tokens = chunk.usage.completion_tokens
    tokens = usage_tokens or chunks
    return Run(first - started, rate(tokens, first, last), tokens)


def unseeded_ttft(client, prompt: str) -> float:
    """Request sent -> first content chunk for an answer without a seed: both servers may then reuse the cached
    start of the previous prompt (a seeded one our engine evaluates afresh, so that its answer never varies)."""
    started = time.perf_counter()
    stream = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": prompt}],
                                            max_tokens=2, temperature=0.8, stream=True)
    first = 0.0
    for chunk in stream:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    return first - started


def prompt_tokens(client) -> int:
    """The prompt's size as the server counts it (its chat template applied): both servers must see the same."""
    answer = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": prompt_for("Story 0")}], max_tokens=1, seed=SEED,
        temperature=0.8)
    return answer.usage.prompt_tokens


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


@dataclass(frozen=True)
class Batch:
    tokens: int
    seconds: float
    last_ttft: float = 0.0         # the slowest of the clients started at once to see its first token

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def concurrent(function, count: int) -> Batch:
    """`count` runs started at once."""
    runs: list[Run] = []
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            runs.append(function(prompt_for(f"Client {i}")))
        except Exception as error:          # a thread's exception would otherwise be lost
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return Batch(sum(run.tokens for run in runs), time.perf_counter() - started, max(run.ttft for run in runs))


def sequential(function, count: int) -> Batch:
    started = time.perf_counter()
    tokens = sum(function(prompt_for(f"Client {i}")).tokens for i in range(count))
    return Batch(tokens, time.perf_counter() - started)


def peer_python() -> Path:
    explicit = os.environ.get("LLAMADESK_BENCH_PEER_PYTHON")
    if explicit:
        return Path(explicit)
    if sys.platform == "win32":
        return ROOT / ".bench-venv" / "Scripts" / "python.exe"
    return ROOT / ".bench-venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peer_command(python: Path, model: Path, port: int) -> list[str]:
    """llama_cpp.server loaded as our side loads (flags from llama_cpp/server/settings.py). Its own defaults
    differ where ours would not: it computes logits for every token and mlocks the model, which our engine
    does not, and it prints timings per request."""
    return [str(python), "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ID,
            "--n_ctx", str(CONTEXT), "--n_batch", str(BATCH), "--n_ubatch", str(BATCH),
            "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS), "--flash_attn", "true",
            "--seed", str(SEED), "--logits_all", "false", "--use_mlock", "false", "--verbose", "false",
            "--interrupt_requests", "false", "--host", "127.0.0.1", "--port", str(port)]


class PeerUnavailable(Exception):
    pass


def log_tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:]) or "(its log is empty)"


def wait_until_serving(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + PEER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PeerUnavailable(f"it exited with status {process.returncode}: {log_tail(log)}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise PeerUnavailable(f"it did not answer within {PEER_START_TIMEOUT_S} s: {log_tail(log)}")


def start_peer(model: Path, home: str) -> tuple[subprocess.Popen, str]:
    python = peer_python()
    if not python.exists():
        raise PeerUnavailable(f"its environment is missing ({python}); `python3 tools/dev.py bench` makes it")
    port = free_port()
    log = Path(home) / "peer.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(peer_command(python, model, port), cwd=home, stdout=log_file,
                                   stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, log)
    except PeerUnavailable:
        stop(process)
        raise
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Peer:
    """llama-cpp-python's own server, measured beside ours. Once anything about it fails it drops out of the
    rest of the run and `note` says why, so that our figures are still printed."""

    def __init__(self, model: Path, home: str) -> None:
        import openai

        self.process: subprocess.Popen | None = None
        self.client = None
        self.note: str | None = None
        try:
            self.process, url = start_peer(model, home)
        except PeerUnavailable as error:
            self.note = f"llama-cpp-python's own server was not measured: {error}"
            return
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)

    def measure(self, function):
        """function(client) -> a figure, or None once the peer has failed."""
        if self.client is None:
            return None
        try:
            return function(self.client)
        except Exception as error:
            self.note = f"llama-cpp-python's own server failed mid-run, its figures are left out: {error!r}"
            self.close()
            return None

    def close(self) -> None:
        self.client = None
        if self.process is not None:
            stop(self.process)
            self.process = None


@dataclass(frozen=True)
class Side:
    """One column of the table."""

    runs: list[Run]
    four: Batch
    prompt_tokens: int | None = None
    unseeded_ttfts: tuple[float, ...] = ()

    @property
    def unseeded_ttft(self) -> float | None:
        return statistics.median(self.unseeded_ttfts) if self.unseeded_ttfts else None

    @property
    def best(self) -> float:
        return max(r.tokens_per_second for r in self.runs)

    @property
    def median(self) -> float:
        return statistics.median(r.tokens_per_second for r in self.runs)

    @property
    def ttft(self) -> float:
        return statistics.median(r.ttft for r in self.runs)


def measure(engine, client, peer: Peer) -> tuple[Side, Side, Side | None]:
    """Engine, server and peer in turn in every round, so that the machine's noise falls on all three alike."""
    warm = prompt_for("Warm-up")
    engine_run(engine, warm), server_run(client, warm), peer.measure(lambda c: server_run(c, warm))
    engine_runs, server_runs, peer_runs = [], [], []
    server_unseeded, peer_unseeded = [], []
    for round_number in range(ROUNDS):
        prompt = prompt_for(f"Story {round_number}")
        engine_runs.append(engine_run(engine, prompt))
        server_runs.append(server_run(client, prompt))
        peer_runs.append(peer.measure(lambda c: server_run(c, prompt)))
        question = prompt_for(f"Question {round_number}")
        server_unseeded.append(unseeded_ttft(client, question))
        peer_unseeded.append(peer.measure(lambda c: unseeded_ttft(c, question)))
    server_prompt, peer_prompt = prompt_tokens(client), peer.measure(prompt_tokens)
    engine_four = sequential(lambda prompt: engine_run(engine, prompt), 4)
    server_four = concurrent(lambda prompt: server_run(client, prompt), 4)
    peer_four = peer.measure(lambda c: concurrent(lambda prompt: server_run(c, prompt), 4))
    peer_side = None
    if peer.client is not None:
        peer_side = Side(peer_runs, peer_four, peer_prompt, tuple(peer_unseeded))
    return (Side(engine_runs, engine_four), Side(server_runs, server_four, server_prompt, tuple(server_unseeded)),
            peer_side)


def cells(figures: list[float | int | None], pattern: str) -> str:
    return "".join(f"{'-':>12}" if figure is None else f"{figure:12{pattern}}" for figure in figures)


def print_table(engine: Side, server: Side, peer: Side | None) -> None:
    def peer_figure(figure):
        return None if peer is None else figure(peer)

    print(f"{'':28}{'engine':>12}{'server':>12}{'peer':>12}{'srv/engine':>12}{'srv/peer':>12}")
    for label, figure, pattern in (
            ("generation tok/s (best)", lambda side: side.best, ".1f"),
            ("generation tok/s (median)", lambda side: side.median, ".1f"),
            ("TTFT s, seeded (median)", lambda side: side.ttft, ".3f"),
            ("TTFT s, unseeded (median)", lambda side: side.unseeded_ttft, ".3f"),
            ("4 clients, all tokens/s", lambda side: side.four.tokens_per_second, ".1f")):
        figures = [figure(engine), figure(server), peer_figure(figure)]
        ratios = [None if figures[0] is None else figures[1] / figures[0],
                  None if figures[2] is None else figures[1] / figures[2]]
        print(f"{label:28}{cells(figures, pattern)}{cells(ratios, '.2f')}")
    for label, figures, pattern in (
            ("4 clients, last TTFT s", [None, server.four.last_ttft, peer_figure(lambda s: s.four.last_ttft)], ".3f"),
            ("tokens per answer", [engine.runs[0].tokens, server.runs[0].tokens,
                                   peer_figure(lambda s: s.runs[0].tokens)], "d"),
            ("prompt tokens", [None, server.prompt_tokens, peer_figure(lambda s: s.prompt_tokens)], "d")):
        print(f"{label:28}{cells(figures, pattern)}")
    print(f"rounds {ROUNDS}, {TOKENS} tokens, {THREADS} threads, context {CONTEXT}; the engine answers its 4 one "
          "after another; peer = llama_cpp.server from .bench-venv, one request at a time (its 4 clients queue); "
          "seeded: our engine evaluates the whole prompt afresh by design, the peer reuses its cached start")


def result(name: str, value: float, target: str, ok: bool, unit_format: str = ".3f") -> None:
    print(f"RESULT {name}={value:{unit_format}} target={target} {'ok' if ok else 'short'}")


def print_results(engine: Side, server: Side, peer: Side | None) -> None:
    overhead = statistics.median(s.ttft - e.ttft for e, s in zip(engine.runs, server.runs))
    result("server_vs_engine_tok_s", server.best / engine.best, ">=0.95", server.best / engine.best >= 0.95)
    result("server_ttft_overhead_ms", overhead * 1000, "<=50", overhead <= 0.05, ".1f")
    four = server.four.tokens_per_second / engine.four.tokens_per_second
    result("server_4_clients_vs_engine", four, ">=0.95", four >= 0.95)
    if peer is None:
        return
    result("server_vs_peer_tok_s", server.best / peer.best, ">=0.95", server.best / peer.best >= 0.95)
    result("server_vs_peer_ttft_seeded", server.ttft / peer.ttft, "<=1.05", server.ttft / peer.ttft <= 1.05)
    if peer.unseeded_ttft:
        ratio = server.unseeded_ttft / peer.unseeded_ttft
        result("server_vs_peer_ttft_unseeded", ratio, "<=1.05", ratio <= 1.05)
    four = server.four.tokens_per_second / peer.four.tokens_per_second
    result("server_vs_peer_4_clients", four, ">=0.95", four >= 0.95)


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
    peer = Peer(model, home)
    try:
        engine_side, server_side, peer_side = measure(engine, client, peer)
    finally:
        engine.close()
        stop(process)
        peer.close()
    print_table(engine_side, server_side, peer_side)
    if peer.note:
        print(peer.note)
    print_results(engine_side, server_side, peer_side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
