#!/usr/bin/env python3
"""Start-up time of the bundled app (dist/LlamaDesk, `make package`) next to the app run from source.

Each launch is the app's own `--self-test` with the SmolLM2 test model: the app reports how long after
its process started the main window was first exposed (`window_shown_seconds`), then loads the model
and answers one question. Launches alternate bundle / source, ROUNDS times each, so both see the same
machine load. The first round is the coldest (the page cache may still hold the files from an earlier
run: dropping it needs root, and is done when /proc/sys/vm/drop_caches can be written).

Prints a table, then RESULT lines. Needs LLAMADESK_TEST_MODEL (make bench sets it).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "dist" / "LlamaDesk" / ("LlamaDesk.exe" if sys.platform == "win32" else "LlamaDesk")
ROUNDS = int(os.environ.get("LLAMADESK_BENCH_ROUNDS", "4"))
TIMEOUT_S = 300
TARGET_RATIO = 1.5   # the bundle should not start more than 1.5x slower than the source checkout


def drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def launch(kind: str, model: Path) -> dict:
    command = [str(BUNDLE)] if kind == "bundle" else [sys.executable, "-m", "desktop.app"]
    with tempfile.TemporaryDirectory() as home:
        result_path = Path(home) / "self-test.json"
        command += ["--self-test", str(model), "--self-test-result", str(result_path)]
        env = dict(os.environ, LLAMADESK_HOME=home)
        if sys.platform.startswith("linux") and shutil.which("xvfb-run"):
            command = ["xvfb-run", "-a", *command]
            env["QT_QPA_PLATFORM"] = "xcb"
        elif sys.platform.startswith("linux"):
            env["QT_QPA_PLATFORM"] = "offscreen"
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
        if not result_path.exists():
            raise RuntimeError(f"{kind}: no result (exit {done.returncode}): {done.stderr[-800:]}")
        result = json.loads(result_path.read_text())
    if not result["ok"]:
        raise RuntimeError(f"{kind}: self-test failed: {result['reason']}")
    return result


def folder_mib(folder: Path) -> float:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return total / (1024 * 1024)


def main() -> int:
    model = Path(os.environ.get("LLAMADESK_TEST_MODEL", ""))
    if not model.is_file():
        print("bench_startup: set LLAMADESK_TEST_MODEL to the SmolLM2 model (make bench does).")
        return 2
    kinds = ["bundle", "source"] if BUNDLE.exists() else ["source"]
    if "bundle" not in kinds:
        print(f"bench_startup: no bundle at {BUNDLE}; run `make package` to compare. Measuring source only.")
    cold = drop_page_cache()
    shown: dict[str, list[float]] = {kind: [] for kind in kinds}
    loads: dict[str, list[float]] = {kind: [] for kind in kinds}
    print(f"{'round':>5}  {'kind':<7} {'window shown s':>14} {'model load s':>12} {'tok/s':>7} {'app RSS MiB':>11}")
    for round_number in range(1, ROUNDS + 1):
        for kind in kinds:
            result = launch(kind, model)
            shown[kind].append(result["window_shown_seconds"])
            loads[kind].append(result["load_seconds"])
            print(f"{round_number:>5}  {kind:<7} {result['window_shown_seconds']:>14.3f} "
                  f"{result['load_seconds']:>12.3f} {result['tokens_per_second']:>7.1f} "
                  f"{result['app_resident_bytes'] / 2**20:>11.0f}", flush=True)
    print(f"first round {'after dropping the page cache' if cold else '(page cache not dropped: not root)'}")
    for kind in kinds:
        print(f"RESULT startup_{kind}_first_seconds={shown[kind][0]:.3f}")
        print(f"RESULT startup_{kind}_median_seconds={statistics.median(shown[kind]):.3f}")
    if "bundle" not in kinds:
        print("RESULT startup_bundle_vs_source=skipped (no bundle) target<=1.5 short")
        return 0
    ratio = statistics.median(shown["bundle"]) / statistics.median(shown["source"])
    verdict = "ok" if ratio <= TARGET_RATIO else "short"
    print(f"RESULT bundle_size_mib={folder_mib(BUNDLE.parent):.0f}")
    print(f"RESULT startup_bundle_vs_source={ratio:.2f} target<={TARGET_RATIO} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
