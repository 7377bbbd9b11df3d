"""The closed loop on this machine: predicted vs llama.cpp's actual memory, predicted vs measured speed, and what
calibration makes of the speed prediction.

For SmolLM2-135M (the real chat model) and two synthetic random-weight models (q8_0, a small and a larger shape):
plan the load (core.fit.load_preparation), load it in the engine, compare the plan's host bytes with llama.cpp's own
allocations (LoadedModel.allocations, from its load log), then generate and compare the plan's tok/s with the measured
decode rate. Each model is loaded LOADS times; every answer's speed is recorded as the app records it
(core.fit.calibration),
and the prediction "after" is the planner's own prediction for the same load once it has that history.

    .venv/bin/python bench/bench_calibration.py

Prints a table and RESULT lines: memory within 5 % of llama.cpp's allocations on SmolLM2; after three loads, every
model's calibrated prediction within 15 % of its measured speed.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LLAMADESK_HOME", tempfile.mkdtemp(prefix="llamadesk-bench-calibration-"))

from core.engine.client import EngineClient  # noqa: E402
from core.engine.protocol import AnswerFinished, SamplingSettings  # noqa: E402
from core.fit import calibration  # noqa: E402
from core.fit.choice import OffloadChoice  # noqa: E402
from core.fit.load_preparation import prepare_load  # noqa: E402
from core.machine import bandwidth, hardware  # noqa: E402
from tests.conftest import smollm2_path  # noqa: E402
from tests.fixtures.tiny_gguf import write_tiny_model  # noqa: E402

LOADS = 3
TOKENS = 32
CONTEXT = 1024
SAMPLING = SamplingSettings(temperature=0.0, seed=1, max_tokens=TOKENS, ignore_eos=True)
PROMPT = [{"role": "user", "content": "Count slowly from one to one hundred."}]
MEMORY_TARGET = 5.0
SPEED_TARGET = 15.0


def models(folder: Path) -> list[tuple[str, Path]]:
    small = write_tiny_model(folder / "synthetic-small.gguf", n_layers=8, n_embd=512, n_ff=1536, n_head=8,
                             n_head_kv=4, context_length=CONTEXT, tensor_type="q8_0", name="synthetic-small")
    large = write_tiny_model(folder / "synthetic-large.gguf", n_layers=12, n_embd=768, n_ff=2048, n_head=12,
                             n_head_kv=4, context_length=CONTEXT, tensor_type="q8_0", name="synthetic-large")
    return [("SmolLM2-135M Q4_1", smollm2_path()), ("synthetic 8x512 q8_0", small),
            ("synthetic 12x768 q8_0", large)]


def measure(name: str, path: Path, snapshot) -> dict:
    """Load LOADS times, each answer's speed recorded as the app records it; "after" is what the planner then
    predicts for the same load (it applies this machine's history itself)."""
    plan = prepare_load(str(path), OffloadChoice(context=CONTEXT), snapshot=snapshot).plan
    predicted = plan.uncalibrated_tokens_per_second or 0.0
    rates, memory = [], None
    for _ in range(LOADS):
        prepared = prepare_load(str(path), OffloadChoice(context=CONTEXT), snapshot=snapshot)
        with EngineClient() as engine:
            loaded = engine.load(prepared.settings)
            memory = calibration.compare_load(loaded)
            finished = [e for e in engine.chat(PROMPT, SAMPLING) if isinstance(e, AnswerFinished)]
        stats = finished[-1].stats
        rates.append(stats.tokens_per_second)
        calibration.record_answer_speed(prepared.plan.placement_devices, prepared.plan.uncalibrated_tokens_per_second,
                                        stats)
    after = prepare_load(str(path), OffloadChoice(context=CONTEXT), snapshot=snapshot).plan
    return {"name": name, "predicted_host": memory.host.predicted_bytes, "actual_host": memory.host.actual_bytes,
            "resident": memory.host.in_use_bytes, "memory_error": memory.host.difference_percent,
            "predicted": predicted, "measured": statistics.median(rates),
            "after": after.predicted_tokens_per_second or 0.0}


def percent_off(value: float, reference: float) -> float:
    return 100.0 * (value - reference) / reference if reference else float("inf")


def main() -> int:
    snapshot = hardware.probe(measure_bandwidth=True)
    print(f"host bandwidth {bandwidth.host_bandwidth() / 1e9:.1f} GB/s; {LOADS} loads per model, {TOKENS} tokens each")
    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-models-") as folder:
        rows = [measure(name, path, snapshot) for name, path in models(Path(folder))]
    MiB = 1024 * 1024
    print(f"{'model':24} {'pred MiB':>9} {'llama.cpp':>9} {'err %':>6} {'resident':>9} "
          f"{'pred tok/s':>10} {'measured':>9} {'ratio':>6} {'after':>7} {'ratio':>6}")
    for r in rows:
        print(f"{r['name']:24} {r['predicted_host'] / MiB:9.1f} {r['actual_host'] / MiB:9.1f} {r['memory_error']:6.1f} "
              f"{r['resident'] / MiB:9.1f} {r['predicted']:10.1f} {r['measured']:9.1f} "
              f"{r['predicted'] / r['measured']:6.2f} {r['after']:7.1f} {r['after'] / r['measured']:6.2f}")
    smol = rows[0]
    memory_ok = abs(smol["memory_error"]) <= MEMORY_TARGET
    worst_after = max(abs(percent_off(r["after"], r["measured"])) for r in rows)
    worst_before = max(abs(percent_off(r["predicted"], r["measured"])) for r in rows)
    print(f"RESULT smollm2_memory_error_percent={smol['memory_error']:.1f} target=<={MEMORY_TARGET} "
          f"{'ok' if memory_ok else 'short'}")
    print(f"RESULT speed_error_before_percent={worst_before:.1f} target=report ok")
    print(f"RESULT speed_error_after_{LOADS}_loads_percent={worst_after:.1f} target=<={SPEED_TARGET} "
          f"{'ok' if worst_after <= SPEED_TARGET else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
