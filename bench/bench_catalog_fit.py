#!/usr/bin/env python3
"""Fit check of the whole catalog against the fake hub: cold header cache < 10 s, warm < 0.5 s.

What the fake hub serves under each catalog file name: a header-only GGUF at the model's real shapes
(architecture, layers, embedding, heads, KV heads, feed-forward, experts, vocabulary size), written with
gguf.GGUFWriter through tests/fixtures/model_zoo.py's builders, padded with zeros to the stub's real size; the
SmolLM2 135M files get the real SmolLM2 bytes. The tensor mix is the zoo's Q4_K_M-style mix whatever quant the
file name says, so Q8_0/F16 rows plan like Q4_K_M: the timings are what this bench measures. Split models are
written as real split files by gguf.GGUFWriter (split_max_tensors), each part a header-only stub.

Cold: empty header cache — range reads over HTTP, parse, plan (8 files in parallel). Warm, after a restart: a
new HeaderCache reading the headers and their parsed summaries from disk, then planning. Warm, same session:
the same HeaderCache object again.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLD_TARGET_S = 10.0
WARM_TARGET_S = 0.5
STUB_DIR = Path(tempfile.gettempdir()) / "llamadesk-bench-catalog-stubs-v1"


def _shapes():
    """Catalog model id -> a model_zoo.ZooModel at the real shapes (None: the real SmolLM2 file)."""
    from tests.fixtures import model_zoo as z

    def llama(name, layers, embd, ff, heads, kv, vocab, *, tied, ctx=131072, head_dim=None):
        meta = z._meta("llama", layers=layers, ctx=ctx, embd=embd, ff=ff, heads=heads, kv_heads=kv,
                       rope_base=500000.0, head_dim=head_dim, rope__dimension_count=head_dim or embd // heads)
        return z.ZooModel(name, "llama", meta, z._llama_like(tied=tied), vocab)

    def qwen3(name, layers, embd, ff, heads, kv, *, tied):
        meta = z._meta("qwen3", layers=layers, ctx=40960, embd=embd, ff=ff, heads=heads, kv_heads=kv,
                       rope_base=1000000.0, eps=1e-6, head_dim=128)
        return z.ZooModel(name, "qwen3", meta, z._llama_like(tied=tied, qk_norm=True), 151936)

    def qwen2(name, layers, embd, ff, heads, kv, vocab=152064):
        meta = z._meta("qwen2", layers=layers, ctx=131072, embd=embd, ff=ff, heads=heads, kv_heads=kv,
                       rope_base=1000000.0, eps=1e-6)
        return z.ZooModel(name, "qwen2", meta, z._llama_like(tied=False, bias=True), vocab)

    def gemma3(name, layers, embd, ff, heads, kv, head_dim, window, ctx=131072):
        meta = z._meta("gemma3", layers=layers, ctx=ctx, embd=embd, ff=ff, heads=heads, kv_heads=kv,
                       rope_base=1000000.0, eps=1e-6, head_dim=head_dim, attention__sliding_window=window,
                       rope__freq_base_swa=10000.0)
        return z.ZooModel(name, "gemma3", meta, z._gemma3_tensors, 262144)

    zoo = z.ZOO
    gpt_oss_120b = z.ZooModel("gpt-oss-120b", "gpt-oss", z._meta(
        "gpt-oss", layers=36, ctx=131072, embd=2880, ff=2880, heads=64, kv_heads=8, rope_base=150000.0,
        head_dim=64, attention__sliding_window=128, expert_count=128, expert_used_count=4,
        expert_feed_forward_length=2880), z._gpt_oss_tensors, 201088)
    phi4_mini = z.ZooModel("phi-4-mini", "phi3", z._meta(
        "phi3", layers=32, ctx=131072, embd=3072, ff=8192, heads=24, kv_heads=8, rope__dimension_count=96),
        z._phi3_tensors, 200064)
    return {
        "smollm2-135m": None,
        "smollm2-360m": llama("smollm2-360m", 32, 960, 2560, 15, 5, 49152, tied=True, ctx=8192),
        "smollm2-1.7b": llama("smollm2-1.7b", 24, 2048, 8192, 32, 32, 49152, tied=True, ctx=8192),
        "qwen3-0.6b": qwen3("qwen3-0.6b", 28, 1024, 3072, 16, 8, tied=True),
        "qwen3-1.7b": qwen3("qwen3-1.7b", 28, 2048, 6144, 16, 8, tied=True),
        "qwen3-4b": qwen3("qwen3-4b", 36, 2560, 9728, 32, 8, tied=True),
        "qwen3-8b": zoo["qwen3-8b"],
        "qwen3-14b": qwen3("qwen3-14b", 40, 5120, 17408, 40, 8, tied=False),
        "qwen3-32b": qwen3("qwen3-32b", 64, 5120, 25600, 64, 8, tied=False),
        "qwen3-30b-a3b": zoo["qwen3-30b-a3b"],
        "qwen2.5-7b": zoo["qwen2.5-7b"],
        "llama-3.2-1b": zoo["llama3.2-1b"],
        "llama-3.2-3b": zoo["llama3.2-3b"],
        "llama-3.1-8b": zoo["llama3.1-8b"],
        "gemma-3-1b": gemma3("gemma-3-1b", 26, 1152, 6912, 4, 1, 256, 512, ctx=32768),
        "gemma-3-4b": zoo["gemma3-4b"],
        "gemma-3-12b": zoo["gemma3-12b"],
        "gemma-3-27b": gemma3("gemma-3-27b", 62, 5376, 21504, 32, 16, 128, 1024),
        "phi-4-mini": phi4_mini,
        "mistral-7b-v0.3": zoo["mistral-7b-v0.3"],
        "mistral-small-3.2": llama("mistral-small-3.2", 40, 5120, 32768, 32, 8, 131072, tied=False,
                                   head_dim=128),
        "deepseek-r1-qwen-1.5b": qwen2("deepseek-r1-qwen-1.5b", 28, 1536, 8960, 12, 2, 151936),
        "deepseek-r1-qwen-7b": zoo["qwen2.5-7b"],
        "deepseek-r1-llama-8b": zoo["llama3.1-8b"],
        "deepseek-r1-qwen-14b": qwen2("deepseek-r1-qwen-14b", 48, 5120, 13824, 40, 8),
        "deepseek-r1-qwen-32b": qwen2("deepseek-r1-qwen-32b", 64, 5120, 27648, 40, 8),
        "gpt-oss-20b": zoo["gpt-oss-20b"],
        "gpt-oss-120b": gpt_oss_120b,
    }


def _stub(model) -> tuple[bytes, int]:
    """(header bytes, real file size) of a zoo model's header-only stub, written once per machine."""
    from core.gguf.reader import read_model_info
    from tests.fixtures.model_zoo import write_stub

    STUB_DIR.mkdir(parents=True, exist_ok=True)
    path = STUB_DIR / f"{model.name}.gguf"
    if not path.exists():
        partial = STUB_DIR / f".{model.name}.{os.getpid()}.partial"
        write_stub(model, partial)
        os.replace(partial, path)
    offset = read_model_info(path).tensor_data_offset
    with open(path, "rb") as handle:
        return handle.read(offset), path.stat().st_size


def _split_stub(model, n_parts: int) -> list[tuple[bytes, int]]:
    """[(header bytes, real size)] of the model written as n_parts split stubs, written once per machine."""
    from tests.fixtures.fake_hub import header_and_size, write_split_stub

    folder = STUB_DIR / f"{model.name}-split{n_parts}"
    names = [folder / f"{model.name}-{i:05d}-of-{n_parts:05d}.gguf" for i in range(1, n_parts + 1)]
    if not all(p.exists() for p in names):
        names = write_split_stub(model, folder, n_parts)
    return [header_and_size(path) for path in names]


def serve_catalog(server, catalog) -> None:
    from tests.conftest import smollm2_path
    from tests.fixtures.fake_hub import FakeFile

    shapes = _shapes()
    smol = smollm2_path().read_bytes()
    for model in catalog.models:
        spec = shapes.get(model.id)
        header, size = (smol, len(smol)) if spec is None else _stub(spec)
        files = {}
        for f in model.files:
            if len(f.all_parts) > 1:
                for name, (part_header, part_size) in zip(f.all_parts, _split_stub(spec, len(f.all_parts))):
                    files[name] = FakeFile.virtual(part_header, part_size)
            else:
                files[f.filename] = FakeFile.real(header) if spec is None else FakeFile.virtual(header, size)
        server.add_repo(model.repo_id, files, gated=False)



def main() -> int:
    from core.fit.choice import choice_from_settings
    from core.machine.hardware import load_profile
    from core.models import catalog as cat
    from core.models.fit_check import FitConditions, check_files
    from core.models.remote_headers import HeaderCache
    from core.settings import Settings
    from tests.fixtures.fake_hub import FakeHub, point_huggingface_hub_at

    work = Path(tempfile.mkdtemp(prefix="llamadesk-bench-catalog-"))
    profile = os.environ.get("BENCH_PROFILE", "desktop-24gb")
    try:
        with FakeHub() as server:
            point_huggingface_hub_at(server.url, str(work / "hf"))
            os.environ["LLAMADESK_HOME"] = str(work / "home")
            catalog = cat.load_catalog(use_refresh_cache=False)
            print("building the fake hub's headers (cached across runs) ...", flush=True)
            serve_catalog(server, catalog)
            targets = cat.file_refs(catalog)
            conditions = FitConditions(load_profile(profile), choice_from_settings(Settings()))

            started = time.perf_counter()
            cold_cache = HeaderCache()
            fits = check_files(targets, conditions, cold_cache)
            cold = time.perf_counter() - started
            requests = len([r for r in server.requests if r.path.startswith("/cdn/")])

            started = time.perf_counter()
            restarted = check_files(targets, conditions, HeaderCache())
            warm_disk = time.perf_counter() - started

            started = time.perf_counter()
            check_files(targets, conditions, cold_cache)
            warm_memory = time.perf_counter() - started
            assert len(server.requests) == len([r for r in server.requests]), "warm runs must not fetch"
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{len(fits)} catalog files planned for the '{profile}' profile "
          f"({requests} range requests when cold)\n")
    width = max(len(f.filename) for f in fits)
    print(f"{'FILE':<{width}}  {'HEADER':>9}  {'TOK/S':>7}  VERDICT")
    for fit in sorted(fits, key=lambda f: (f.plan is None, f.size or 0)):
        header = sum(e.header_length for e in fit.entries)
        speed = f"{fit.tokens_per_second:7.1f}" if fit.tokens_per_second else "      —"
        print(f"{fit.filename:<{width}}  {header / 2**20:7.2f}Mi  {speed}  {fit.badge if fit.plan else fit.error}")
    failures = [f for f in fits if f.plan is None] + [f for f in restarted if f.plan is None]
    print(f"\ncold (empty cache, HTTP range reads + parse + plan): {cold:.2f} s")
    print(f"warm after a restart (headers and parsed summaries from disk): {warm_disk:.3f} s")
    print(f"warm in the same session: {warm_memory:.3f} s")
    if failures:
        print(f"{len(failures)} files could not be planned")
    print(f"RESULT catalog_fit_cold_s={cold:.2f} target=<{COLD_TARGET_S:.0f} "
          f"{'ok' if cold < COLD_TARGET_S and not failures else 'short'}")
    print(f"RESULT catalog_fit_warm_s={warm_disk:.3f} target=<{WARM_TARGET_S} "
          f"{'ok' if warm_disk < WARM_TARGET_S and not failures else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
