#!/usr/bin/env python3
"""The memory estimator (core/fit/estimate.py) against llama.cpp's own dry run (core/fit/dry_run.py).

1. The model zoo (tests/fixtures/model_zoo.py: header-only stubs of real models, the newer architectures
   included: Mamba2 / gated-DeltaNet / short-convolution hybrids, shared KV, MLA, chunked attention, MTP)
   on the host, contexts 2k/8k/32k, KV f16 and q8_0 with flash attention and f16 without: total bytes per
   device; the worst case of each architecture is printed after the table.
2. Per-device split with a local RPC server as a GPU-like device "RPC0" (ARCHITECTURE §4): SmolLM2 at
   several n_gpu_layers, a few zoo models, and MoE experts kept on the host for several k (--n-cpu-moe).
3. The real SmolLM2 loaded in a fresh process: predicted host memory vs its resident growth.

Tolerance per device: max(2 % of the dry run's total, 32 MiB). Tables list the worst cases last and the
script ends with RESULT lines. Needs the SmolLM2 test model (LLAMADESK_TEST_MODEL or the set-up's cache).
Set LLAMADESK_BENCH_QUICK=1 for a smaller matrix.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.fit.dry_run import dry_run  # noqa: E402
from core.gguf.reader import ModelInfo, read_model_info  # noqa: E402
from core.fit.estimate import GpuDevice, MemorySettings, estimate  # noqa: E402
from tests.fixtures.model_zoo import ZOO, zoo_model  # noqa: E402

MiB = 1024 * 1024
QUICK = os.environ.get("LLAMADESK_BENCH_QUICK") == "1"
CONTEXTS = (2048, 8192) if QUICK else (2048, 8192, 32768)
MODES = (("f16", True), ("q8_0", True), ("f16", False))
SMOL_LAYERS = (0, 1, 2, 8, 16, 24, 30, 31)
SPLIT_MODELS = ("llama3.2-1b", "qwen3-30b-a3b", "gemma3-4b", "gpt-oss-20b")
SPLIT_LAYERS = (1, 12, -1)
EXPERT_MODELS = ("qwen3-30b-a3b", "gpt-oss-20b")
EXPERT_CASES = ((-1, 4), (-1, 12), (-1, 24), (20, 8))   # (n_gpu_layers, cpu_expert_layers)
RSS_TOLERANCE = 0.10


def tolerance(total: int) -> float:
    return max(0.02 * total, 32 * MiB)


@dataclass(frozen=True)
class Row:
    case: str
    device: str
    exact: int
    estimated: int
    exact_compute: int
    estimated_compute: int

    @property
    def error(self) -> int:
        return self.estimated - self.exact

    @property
    def share_of_tolerance(self) -> float:
        return abs(self.error) / tolerance(self.exact)


def smollm2_path() -> Path:
    from tests.conftest import smollm2_path as configured

    return configured()


def compare(path: Path, info: ModelInfo, settings: MemorySettings, case: str, rpc: tuple[str, ...] = ()) -> list[Row]:
    exact = dry_run(path, settings, model=info, rpc_endpoints=rpc)
    gpus = [GpuDevice(d.name, 1) for d in exact.devices if d.kind == "gpu"] or (
        [GpuDevice("RPC0", 1)] if rpc else [])
    guess = estimate(info, settings, gpus)
    rows = []
    for device in exact.devices:
        mine = guess.device(device.name)
        rows.append(Row(case, device.name, device.total_bytes, mine.total_bytes, device.compute_bytes,
                        mine.compute_bytes))
    return rows


def zoo_matrix() -> list[Row]:
    rows = []
    for name in ZOO:
        path = zoo_model(name)
        info = read_model_info(path)
        for context in CONTEXTS:
            for kv_type, flash in MODES:
                settings = MemorySettings(n_gpu_layers=0, n_ctx=context, kv_type=kv_type, flash_attn=flash)
                case = f"{name} ctx={context} kv={kv_type} fa={'on' if flash else 'off'}"
                rows += compare(path, info, settings, case)
    return rows


def split_matrix(endpoint: str) -> list[Row]:
    rows = []
    smol = smollm2_path()
    info = read_model_info(smol)
    for layers in SMOL_LAYERS:
        for context, kv_type, flash in ((8192, "f16", True), (2048, "f16", False), (8192, "q8_0", True)):
            settings = MemorySettings(n_gpu_layers=layers, n_ctx=context, kv_type=kv_type, flash_attn=flash)
            case = f"smollm2 ngl={layers} ctx={context} kv={kv_type} fa={'on' if flash else 'off'}"
            rows += compare(smol, info, settings, case, (endpoint,))
    for name in (SPLIT_MODELS[:2] if QUICK else SPLIT_MODELS):
        path = zoo_model(name)
        info = read_model_info(path)
        for layers in SPLIT_LAYERS:
            settings = MemorySettings(n_gpu_layers=layers, n_ctx=8192)
            rows += compare(path, info, settings, f"{name} ngl={layers} ctx=8192 kv=f16 fa=on", (endpoint,))
    for name in (EXPERT_MODELS[:1] if QUICK else EXPERT_MODELS):
        path = zoo_model(name)
        info = read_model_info(path)
        for layers, experts in EXPERT_CASES:
            settings = MemorySettings(n_gpu_layers=layers, n_ctx=8192, cpu_expert_layers=experts)
            rows += compare(path, info, settings, f"{name} ngl={layers} cpu-moe={experts} ctx=8192", (endpoint,))
    return rows


# --- the real model's resident memory -----------------------------------------------------------------

RSS_CHILD = textwrap.dedent("""
    import ctypes, json, sys
    import psutil
    import llama_cpp as L
    quiet = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(lambda *a: None)
    L.llama_log_set(quiet, None)
    L.llama_backend_init()
    me = psutil.Process()
    base = me.memory_info().rss
    path, n_ctx, all_logits = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    mp = L.llama_model_default_params(); mp.n_gpu_layers = 0
    model = L.llama_model_load_from_file(path.encode(), mp)
    cp = L.llama_context_default_params()
    cp.n_ctx = n_ctx; cp.n_batch = 512; cp.n_ubatch = 512; cp.flash_attn_type = 1
    cp.n_threads = 2; cp.n_threads_batch = 2
    ctx = L.llama_init_from_model(model, cp)
    n = 512
    batch = L.llama_batch_init(n, 0, 1)
    for i in range(n):
        batch.token[i] = 100 + i; batch.pos[i] = i; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = 0
        batch.logits[i] = 1 if (all_logits or i == n - 1) else 0
    batch.n_tokens = n
    rc = L.llama_decode(ctx, batch)
    print(json.dumps({"growth": me.memory_info().rss - base, "rc": rc}))
""")


def resident_growth(path: Path, n_ctx: int, all_logits: bool) -> int:
    done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(path), str(n_ctx), "1" if all_logits else "0"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the SmolLM2 load failed: {done.stderr[-500:]}")
    return json.loads(lines[-1])["growth"]


def rss_rows() -> list[tuple[str, int, int]]:
    """(case, predicted, measured): a worst-case micro-batch (every logit asked: the compute buffer is used
    to its reserved size, and llama.cpp grows the output buffer to 512 rows), then a chat-like prompt
    (only the last token's logits: most of the reserved compute buffer is never touched)."""
    path = smollm2_path()
    info = read_model_info(path)
    settings = MemorySettings(n_gpu_layers=0, n_ctx=4096)
    host = estimate(info, settings).host.total_bytes
    grown_output = (512 - 1) * info.vocab_size * 4
    return [("SmolLM2 ctx=4096, 512-token batch, all logits", host + grown_output,
             resident_growth(path, 4096, True)),
            ("SmolLM2 ctx=4096, 512-token prompt, last logits", host, resident_growth(path, 4096, False))]


# --- output -------------------------------------------------------------------------------------------

def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    header = (f"{'case':58} {'device':6} {'dry run':>10} {'estimate':>10} {'error':>9} {'tol':>8} {'/tol':>6}"
              "  compute dry/est")
    print(header)
    print("-" * len(header))
    for row in sorted(rows, key=lambda r: r.share_of_tolerance):
        print(f"{row.case:58} {row.device:6} {row.exact / MiB:10.1f} {row.estimated / MiB:10.1f} "
              f"{row.error / MiB:+9.1f} {tolerance(row.exact) / MiB:8.1f} {row.share_of_tolerance:6.2f}  "
              f"{row.exact_compute / MiB:.1f}/{row.estimated_compute / MiB:.1f}")


def print_worst_per_architecture(rows: list[Row]) -> None:
    worst: dict[str, Row] = {}
    for row in rows:
        name = row.case.split(" ", 1)[0]
        if name not in worst or row.share_of_tolerance > worst[name].share_of_tolerance:
            worst[name] = row
    print("\nWorst case per model, MiB (error / tolerance)")
    for name, row in sorted(worst.items(), key=lambda item: item[1].share_of_tolerance):
        print(f"{name:22} {row.error / MiB:+8.1f} / {tolerance(row.exact) / MiB:7.1f} = {row.share_of_tolerance:5.2f}"
              f"   {row.case}")


def result(name: str, value: float, target: str, ok: bool) -> None:
    print(f"RESULT {name}={value:.3f} target={target} {'ok' if ok else 'short'}")


def main() -> int:
    zoo = zoo_matrix()
    print_table(f"Host memory, estimate vs dry run ({len(ZOO)} models x {len(CONTEXTS)} contexts x "
                f"{len(MODES)} modes), MiB", zoo)
    print_worst_per_architecture(zoo)
    import tempfile

    from core.machine.rpc import start_local_server

    with tempfile.TemporaryDirectory() as folder, \
            start_local_server(log_path=Path(folder) / "rpc-server.log") as server:
        split = split_matrix(server.endpoint)
    print_table("Per-device split with an RPC device (RPC0 = GPU-like), MiB", split)
    rss = rss_rows()
    print("\nSmolLM2 loaded for real: predicted host memory vs resident growth of the process, MiB")
    for case, predicted, measured in rss:
        print(f"{case:52} predicted {predicted / MiB:8.1f} measured {measured / MiB:8.1f} "
              f"ratio {predicted / measured:5.2f}")
    worst_zoo = max(r.share_of_tolerance for r in zoo)
    worst_split = max(r.share_of_tolerance for r in split)
    within = sum(r.share_of_tolerance <= 1 for r in zoo + split)
    print()
    result("zoo_worst_error_share_of_tolerance", worst_zoo, "<=1", worst_zoo <= 1)
    result("split_worst_error_share_of_tolerance", worst_split, "<=1", worst_split <= 1)
    result("devices_within_tolerance", within / len(zoo + split), "1.0", within == len(zoo + split))
    case, predicted, measured = rss[0]
    ratio = predicted / measured
    result("smollm2_predicted_over_resident", ratio, f"{1 - RSS_TOLERANCE:.2f}..{1 + RSS_TOLERANCE:.2f}",
           abs(ratio - 1) <= RSS_TOLERANCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
