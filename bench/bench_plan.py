#!/usr/bin/env python3
"""How fast the planner answers: one file from a parsed header (< 5 ms), and a list of 200 (< 0.5 s).

The headers are the model zoo's (tests/fixtures/model_zoo.py, 13 architectures) and the real SmolLM2,
parsed once beforehand (parsing is core/gguf/reader.py's business); the machines are the shipped hardware
profiles. Prints a table per profile (slowest last) and RESULT lines.
"""
from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.gguf.reader import ModelInfo, read_model_info  # noqa: E402
from core.machine.hardware import list_profiles, load_profile  # noqa: E402
from core.fit.planner import PlanRequest, plan  # noqa: E402
from tests.fixtures.model_zoo import ZOO, zoo_model  # noqa: E402

REPEATS = 15
LIST_SIZE = 200
ONE_FILE_TARGET_S = 0.005
LIST_TARGET_S = 0.5


def headers() -> list[ModelInfo]:
    infos = [read_model_info(zoo_model(name)) for name in ZOO]
    try:
        from tests.conftest import smollm2_path

        if smollm2_path().exists():
            infos.append(read_model_info(smollm2_path()))
    except ImportError:
        pass
    return infos


def time_one(info: ModelInfo, snapshot, request: PlanRequest) -> tuple[float, str]:
    samples = []
    verdict = ""
    for _ in range(REPEATS):
        started = time.perf_counter()
        verdict = plan(info, snapshot, request).verdict
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), verdict


def time_list(infos: list[ModelInfo], snapshot) -> float:
    copies = [replace(infos[i % len(infos)], source=f"copy-{i}") for i in range(LIST_SIZE)]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for info in copies:
            plan(info, snapshot, PlanRequest())
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    infos = headers()
    gc.disable()
    worst_one = 0.0
    worst_list = 0.0
    all_samples = []
    for profile in list_profiles():
        snapshot = load_profile(profile)
        rows = []
        for info in infos:
            for request in (PlanRequest(), PlanRequest(context=8192, kv_type="q8_0")):
                seconds, verdict = time_one(info, snapshot, request)
                rows.append((seconds, info.name or info.source, request.kv_type, verdict))
                all_samples.append(seconds)
        rows.sort()
        print(f"\n{profile}: median planning time per file ({REPEATS} runs each)")
        for seconds, name, kv_type, verdict in rows:
            print(f"  {name:22} kv={kv_type:5} {seconds * 1000:7.3f} ms  {verdict}")
        listed = time_list(infos, snapshot)
        print(f"  {LIST_SIZE} files: {listed * 1000:.1f} ms")
        worst_one = max(worst_one, rows[-1][0])
        worst_list = max(worst_list, listed)
    gc.enable()
    print(f"\nmedian over all files and profiles: {statistics.median(all_samples) * 1000:.3f} ms")
    print(f"RESULT plan_one_file_worst_ms={worst_one * 1000:.3f} target=<{ONE_FILE_TARGET_S * 1000:.0f} "
          f"{'ok' if worst_one < ONE_FILE_TARGET_S else 'short'}")
    print(f"RESULT plan_200_files_worst_s={worst_list:.3f} target=<{LIST_TARGET_S} "
          f"{'ok' if worst_list < LIST_TARGET_S else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
