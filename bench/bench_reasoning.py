#!/usr/bin/env python3
"""What the output splitter (thinking / answer / tool calls) costs next to generation itself.

One run, in this process, with the real SmolLM2 (LLAMADESK_TEST_MODEL) through the engine's own runtime and
sampler: N tokens are generated (ignore_eos) and each token's decode + sample time is measured; the same
tokens' text is then fed through the splitters the engine would use, token by token: "none" (no thinking,
no tool syntax), "think" (Qwen3's <think> with every tool-call syntax watched, so every '<' and '[' is
looked at) and "harmony" (gpt-oss). The generated text is wrapped as a real answer of each family
(<think>...</think>answer; analysis then final channel) so every state of the splitter is exercised.

  cost %  = splitter seconds per token / generation seconds per token x 100    (target < 2 %)

Prints a table and `RESULT splitter_cost_pct=... target=<2 ok|short` (the worst family, best of ROUNDS).
Environment: LLAMADESK_BENCH_TOKENS (default 256), LLAMADESK_BENCH_ROUNDS (default 5), LLAMADESK_BENCH_THREADS
(default: the CPUs this process may use).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.engine.answer_text import AnswerText  # noqa: E402
from core.engine.llama_runtime import LlamaRuntime  # noqa: E402
from core.engine.protocol import LoadSettings, SamplingSettings  # noqa: E402
from core.engine.reasoning import HarmonySplitter, TagSplitter  # noqa: E402
from core.engine.sampler import sampler_chain  # noqa: E402
from core.engine.tool_calls import SYNTAXES  # noqa: E402

TOKENS = int(os.environ.get("LLAMADESK_BENCH_TOKENS", "256"))
ROUNDS = int(os.environ.get("LLAMADESK_BENCH_ROUNDS", "5"))
THREADS = int(os.environ.get("LLAMADESK_BENCH_THREADS", "0")) or len(os.sched_getaffinity(0))
TARGET_PCT = 2.0


def model_path() -> Path:
    explicit = os.environ.get("LLAMADESK_TEST_MODEL")
    if explicit:
        return Path(explicit)
    import platformdirs
    return Path(platformdirs.user_cache_dir("llamadesk", appauthor=False)) / "test-models" / \
        "SmolLM2-135M-Instruct.Q4_1.gguf"


def generate(runtime: LlamaRuntime) -> tuple[list[str], float]:
    """The texts of TOKENS generated tokens and the seconds per token of decode + sample."""
    sampling = SamplingSettings(temperature=0.8, seed=7, max_tokens=TOKENS, ignore_eos=True)
    runtime.forget_from(0)
    runtime.evaluate(runtime.tokenize("<|im_start|>user\nTell me a long story.<|im_end|>\n"
                                      "<|im_start|>assistant\n", add_bos=False))
    text = AnswerText()
    pieces: list[str] = []
    with sampler_chain(sampling, seed=7, n_vocab=runtime.n_vocab, vocab=runtime.vocab) as chain:
        started = time.perf_counter()
        token = runtime.sample(chain)
        for _ in range(TOKENS):
            pieces.append(text.feed(runtime.piece(token)))
            runtime.evaluate_one(token)
            token = runtime.sample(chain)
        seconds = time.perf_counter() - started
    return pieces, seconds / TOKENS


def framed(pieces: list[str], family: str) -> list[str]:
    """The generated pieces as one answer of the family: the first half thinking, the rest answer."""
    half = len(pieces) // 2
    if family == "think":
        return ["<th", "ink>"] + pieces[:half] + ["</", "think>", "\n\n"] + pieces[half:]
    if family == "harmony":
        return (["<|channel|>", "analysis", "<|message|>"] + pieces[:half] +
                ["<|end|>", "<|start|>", "assistant", "<|channel|>", "final", "<|message|>"] + pieces[half:])
    return pieces


SPLITTERS = {
    "none": lambda: TagSplitter(None, None, ()),
    "think": lambda: TagSplitter("<think>", "</think>", SYNTAXES),
    "harmony": HarmonySplitter,
}


def splitter_seconds(family: str, pieces: list[str]) -> float:
    """Seconds per generated token spent in the splitter (best of several passes)."""
    stream = framed(pieces, family)
    best = float("inf")
    for _ in range(20):
        splitter = SPLITTERS[family]()
        started = time.perf_counter()
        for piece in stream:
            if piece:
                splitter.feed(piece)
        splitter.finish()
        best = min(best, time.perf_counter() - started)
    return best / len(pieces)


def main() -> int:
    path = model_path()
    if not path.exists():
        print(f"no model at {path}: run the set-up first")
        return 1
    runtime = LlamaRuntime.load(LoadSettings(str(path), n_ctx=2048), n_threads=THREADS)
    try:
        best_generation = float("inf")
        costs: dict[str, float] = {family: float("inf") for family in SPLITTERS}
        for _ in range(ROUNDS):
            pieces, per_token = generate(runtime)
            best_generation = min(best_generation, per_token)
            for family in SPLITTERS:
                costs[family] = min(costs[family], splitter_seconds(family, pieces) / per_token * 100)
    finally:
        runtime.close()
    print(f"generation: {1 / best_generation:8.1f} tok/s ({best_generation * 1e3:.2f} ms/token, best of {ROUNDS})")
    print(f"{'family':<10}{'splitter µs/token':>20}{'cost % of a token':>20}")
    for family, cost in costs.items():
        print(f"{family:<10}{cost / 100 * best_generation * 1e6:>20.2f}{cost:>20.3f}")
    worst = max(costs.values())
    verdict = "ok" if worst < TARGET_PCT else "short"
    print(f"RESULT splitter_cost_pct={worst:.3f} target=<{TARGET_PCT:g} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
