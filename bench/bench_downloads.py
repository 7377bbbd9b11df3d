#!/usr/bin/env python3
"""Download throughput on loopback: LlamaDesk's download manager vs a plain HTTP client, same server, same run.

The fake hub (tests/fixtures/fake_hub.py) serves one file of random bytes. Each round fetches it twice, in
alternating order: the app (core.downloads: HEAD for the LFS sha256, Range-capable stream into a .part file,
SHA-256 while downloading, placed into the HF cache) and a plain client (urllib following the same redirect,
copying the body to a file, no verification). Target: app >= 0.8 x plain, on the median of the rounds.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZE = int(os.environ.get("BENCH_DOWNLOAD_MIB", "256")) << 20
ROUNDS = int(os.environ.get("BENCH_DOWNLOAD_ROUNDS", "5"))
TARGET_RATIO = 0.8
REPO, NAME = "bench/Throughput-GGUF", "payload-Q4_K_M.gguf"



def plain_fetch(url: str, target: Path) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url) as response, open(target, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    return time.perf_counter() - started


def sha256_seconds() -> float:
    import hashlib

    data = os.urandom(SIZE)
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return time.perf_counter() - started


def app_fetch(cache: Path) -> float:
    from core.downloads import DownloadRequest, download

    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    path = download(DownloadRequest(REPO, NAME), cache_dir=cache)
    seconds = time.perf_counter() - started
    assert path.stat().st_size == SIZE
    return seconds


def serve(size: int, pipe) -> None:
    """The fake hub in its own process, so its Python threads do not share a GIL with the clients measured."""
    from tests.fixtures.fake_hub import FakeHub

    with FakeHub() as server:
        server.add_repo(REPO, {NAME: os.urandom(size)})
        pipe.send(server.url)
        pipe.recv()  # until the bench is done


def main() -> int:
    import multiprocessing

    from tests.fixtures.fake_hub import point_huggingface_hub_at

    work = Path(tempfile.mkdtemp(prefix="llamadesk-bench-downloads-"))
    ours, theirs = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(SIZE, theirs), daemon=True)
    server.start()
    try:
        hub_url = ours.recv()
        point_huggingface_hub_at(hub_url, str(work / "hf"))
        os.environ["LLAMADESK_HOME"] = str(work / "home")
        url = f"{hub_url}/{REPO}/resolve/main/{NAME}"
        plain_fetch(url, work / "warm-up")  # first connection, page cache
        app_fetch(work / "cache")  # first use of the clients (TLS context, session), as an app that has started
        app, plain = [], []
        print(f"file: {SIZE >> 20} MiB of random bytes from a fake hub process on 127.0.0.1, {ROUNDS} rounds, "
              "order alternating\n")
        print(f"{'round':>5}  {'app MB/s':>9}  {'plain MB/s':>10}  {'ratio':>6}")
        for round_number in range(ROUNDS):
            order = ("app", "plain") if round_number % 2 == 0 else ("plain", "app")
            seconds = {}
            for who in order:
                if who == "app":
                    seconds[who] = app_fetch(work / "cache")
                else:
                    seconds[who] = plain_fetch(url, work / "plain.bin")
            app.append(SIZE / seconds["app"] / 1e6)
            plain.append(SIZE / seconds["plain"] / 1e6)
            print(f"{round_number + 1:>5}  {app[-1]:>9.0f}  {plain[-1]:>10.0f}  {app[-1] / plain[-1]:>6.2f}")
    finally:
        ours.send("stop")
        server.join(10)
        shutil.rmtree(work, ignore_errors=True)
    ratio = statistics.median(app) / statistics.median(plain)
    print(f"\nmedian: app {statistics.median(app):.0f} MB/s (SHA-256 verified, placed in the HF cache), "
          f"plain {statistics.median(plain):.0f} MB/s (no verification)")
    print(f"SHA-256 of {SIZE >> 20} MiB on this machine: {sha256_seconds():.2f} s (the check the plain client skips)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"RESULT download_throughput_ratio={ratio:.2f} target=>={TARGET_RATIO} "
          f"{'ok' if ratio >= TARGET_RATIO else 'short'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
