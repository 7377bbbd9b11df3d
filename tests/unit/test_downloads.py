"""The download manager against the fake hub: verified files in the HF cache, resume, faults, queue."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir

from core.models import hub
from core.models.downloads.manager import (
    AccessDenied,
    ChecksumMismatch,
    DownloadManager,
    DownloadRequest,
    DownloadState,
    NetworkError,
    NotEnoughDiskSpace,
    NotFound,
    RetryPolicy,
    UnsafeFileName,
    download,
)
from tests.fixtures.fake_hub import TEST_TOKEN, Fault

REPO = "tester/Blob-GGUF"
NAME = "model-Q4_K_M.gguf"
MiB = 1 << 20
FAST_RETRY = RetryPolicy(stall_seconds=0.5, max_retries=3, first_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def payload() -> bytes:
    return os.urandom(5 * MiB + 12345)


@pytest.fixture
def repo(fake_hub, payload):  # noqa: F811
    fake_hub.add_repo(REPO, {NAME: payload, "second.gguf": payload[:MiB], "third.gguf": payload[:2 * MiB]})
    return fake_hub


def _manager(tmp_path, **options) -> DownloadManager:
    options.setdefault("policy", FAST_RETRY)
    return DownloadManager(state_file=tmp_path / "downloads.json", **options)


def _cdn_gets(hub_server, filename=NAME):
    return hub_server.requests_for(filename)


def test_download_lands_verified_in_the_hf_cache_layout(repo, payload):
    path = download(DownloadRequest(REPO, NAME))
    assert path.read_bytes() == payload
    assert path.is_symlink() and path.resolve().name == hashlib.sha256(payload).hexdigest()
    info = scan_cache_dir(hub.hf_cache_dir())
    assert not info.warnings
    (cached,) = info.repos
    assert cached.repo_id == REPO
    (revision,) = cached.revisions
    assert revision.refs == frozenset({"main"})
    assert {f.file_name for f in revision.files} == {NAME}


def test_progress_reports_bytes_total_speed_and_eta(repo, payload, tmp_path):
    seen = []
    manager = _manager(tmp_path, on_progress=seen.append, progress_interval=0.0, chunk_size=256 * 1024)
    result = manager.wait(manager.enqueue(DownloadRequest(REPO, NAME)))
    manager.close()
    assert result.state == DownloadState.DONE
    running = [p for p in seen if p.state == DownloadState.DOWNLOADING and p.bytes_done]
    assert running, "no progress while downloading"
    assert all(p.total_bytes == len(payload) for p in running)
    assert [p.bytes_done for p in running] == sorted(p.bytes_done for p in running)
    assert any(p.speed_bytes_per_second > 0 and p.eta_seconds is not None for p in running)
    states = [p.state for p in seen]
    assert DownloadState.VERIFYING in states
    assert states.index(DownloadState.VERIFYING) > max(i for i, s in enumerate(states) if s == DownloadState.DOWNLOADING)
    assert seen[-1].state == DownloadState.DONE and seen[-1].path is not None


def test_a_dropped_connection_resumes_from_the_offset(repo, payload):
    repo.add_fault(REPO, NAME, Fault(drop_after=3 * MiB + 17))
    path = download(DownloadRequest(REPO, NAME), policy=FAST_RETRY)
    assert path.read_bytes() == payload
    ranges = [r.range for r in _cdn_gets(repo)]
    assert ranges == [None, f"bytes={3 * MiB + 17}-"]


def test_a_stalled_stream_is_detected_and_resumed(repo, payload):
    repo.add_fault(REPO, NAME, Fault(stall_after=2 * MiB, stall_seconds=3.0))
    path = download(DownloadRequest(REPO, NAME), policy=FAST_RETRY)
    assert path.read_bytes() == payload
    ranges = [r.range for r in _cdn_gets(repo)]
    assert ranges == [None, f"bytes={2 * MiB}-"]


def test_retries_give_up_with_a_clear_message_and_keep_the_bytes(repo):
    repo.add_fault(REPO, NAME, Fault(drop_after=MiB, times=1))
    repo.add_fault(REPO, NAME, Fault(drop_after=0, times=10))
    with pytest.raises(NetworkError, match="kept failing.*resume it later"):
        download(DownloadRequest(REPO, NAME), policy=FAST_RETRY)
    parts = list(hub.hf_cache_dir().rglob("*.llamadesk-part"))
    assert len(parts) == 1 and parts[0].stat().st_size == MiB


def test_wrong_bytes_are_rejected_and_never_placed(repo):
    repo.add_fault(REPO, NAME, Fault(corrupt=True))
    with pytest.raises(ChecksumMismatch, match="did not match the hub's SHA-256.*will not be offered"):
        download(DownloadRequest(REPO, NAME))
    cache = hub.hf_cache_dir()
    assert not [p for p in cache.rglob("*") if p.is_file() or p.is_symlink()], "something was left in the cache"
    assert not scan_cache_dir(cache).repos or all(not r.nb_files for r in scan_cache_dir(cache).repos)


def test_gated_repo_needs_a_login(fake_hub, payload, monkeypatch):  # noqa: F811
    fake_hub.add_repo("corp/Gated-GGUF", {NAME: payload[:MiB]}, gated=True)
    with pytest.raises(AccessDenied, match="gated.*hf auth login"):
        download(DownloadRequest("corp/Gated-GGUF", NAME))
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    path = download(DownloadRequest("corp/Gated-GGUF", NAME))
    assert path.read_bytes() == payload[:MiB]
    cdn = fake_hub.requests_for(NAME)[-1]
    assert cdn.authorization is None, "the token must not be sent to the CDN"


def test_injected_401_is_access_denied(repo):
    repo.add_fault(REPO, NAME, Fault(status=401))
    with pytest.raises(AccessDenied):
        download(DownloadRequest(REPO, NAME))


def test_missing_file_and_missing_repo_are_not_found(repo):
    with pytest.raises(NotFound, match="not found"):
        download(DownloadRequest(REPO, "absent.gguf"))
    repo.add_fault(REPO, NAME, Fault(status=404))
    with pytest.raises(NotFound):
        download(DownloadRequest(REPO, NAME))


@pytest.mark.parametrize("name", ["../../evil.gguf", "/etc/passwd", "a/../../b.gguf", "..\\x.gguf", "C:/x.gguf", ""])
def test_path_traversal_names_are_refused_before_any_request(repo, name):
    before = len(repo.requests)
    with pytest.raises(UnsafeFileName, match="outside the model folder"):
        download(DownloadRequest(REPO, name))
    assert len(repo.requests) == before


def test_not_enough_disk_space_stops_before_downloading(repo, tmp_path):
    """Disk full is simulated by injecting the free-space function (no tmpfs needed)."""
    manager = _manager(tmp_path, free_space=lambda path: 3 * MiB)
    result = manager.wait(manager.enqueue(DownloadRequest(REPO, NAME)))
    manager.close()
    assert result.state == DownloadState.FAILED
    assert isinstance(manager.error(result.job_id), NotEnoughDiskSpace)
    assert "Not enough free disk space" in result.error
    assert _cdn_gets(repo) == []


def test_pause_then_resume_after_an_app_restart(repo, payload, tmp_path):
    paused = threading.Event()
    first: DownloadManager

    def pause_early(progress):
        if progress.state == DownloadState.DOWNLOADING and progress.bytes_done >= MiB and not paused.is_set():
            paused.set()
            first.pause(progress.job_id)

    first = _manager(tmp_path, on_progress=pause_early, progress_interval=0.0, chunk_size=256 * 1024)
    job = first.enqueue(DownloadRequest(REPO, NAME))
    assert first.wait(job, timeout=30).state == DownloadState.PAUSED
    first.close()
    (part,) = hub.hf_cache_dir().rglob("*.llamadesk-part")
    kept = part.stat().st_size
    assert 0 < kept < len(payload)

    second = _manager(tmp_path)  # a new process would do the same: read the saved queue
    (restored,) = second.restore()
    assert second.status(restored).state == DownloadState.PAUSED
    second.resume(restored)
    result = second.wait(restored, timeout=30)
    second.close()
    assert result.state == DownloadState.DONE
    assert result.path.read_bytes() == payload
    assert _cdn_gets(repo)[-1].range == f"bytes={kept}-"
    assert not list(hub.hf_cache_dir().rglob("*.llamadesk-part"))


def test_cancel_deletes_the_partial_file(repo, tmp_path):
    manager = _manager(tmp_path)
    repo.add_fault(REPO, NAME, Fault(drop_after=MiB, times=1))
    repo.add_fault(REPO, NAME, Fault(drop_after=0, times=10))
    job = manager.enqueue(DownloadRequest(REPO, NAME))
    assert manager.wait(job, timeout=30).state == DownloadState.FAILED
    assert list(hub.hf_cache_dir().rglob("*.llamadesk-part"))
    manager.cancel(job)
    manager.close()
    assert manager.status(job).state == DownloadState.CANCELLED
    assert not list(hub.hf_cache_dir().rglob("*.llamadesk-part"))


def test_a_queue_runs_at_most_max_parallel_at_once(repo, tmp_path):
    manager = _manager(tmp_path, max_parallel=2)
    jobs = [manager.enqueue(DownloadRequest(REPO, name)) for name in (NAME, "second.gguf", "third.gguf")]
    results = [manager.wait(job, timeout=60) for job in jobs]
    manager.close()
    assert [r.state for r in results] == [DownloadState.DONE] * 3
    assert 1 <= repo.max_active_downloads <= 2


def test_a_cached_file_is_not_downloaded_again(repo):
    first = download(DownloadRequest(REPO, NAME))
    gets = len(_cdn_gets(repo))
    assert download(DownloadRequest(REPO, NAME)) == first
    assert len(_cdn_gets(repo)) == gets


def test_a_full_disk_while_writing_fails_with_a_clear_message(repo, tmp_path, monkeypatch):
    """A real ENOSPC: the part file is a link to /dev/full (the link, never /dev/full, could be removed)."""
    from core.models.downloads.manager import HubCacheLayout

    full = tmp_path / "full-disk-part"
    full.symlink_to("/dev/full")
    monkeypatch.setattr(HubCacheLayout, "part", lambda self, sha256: full)
    with pytest.raises(NotEnoughDiskSpace, match="is full.*Free some space"):
        download(DownloadRequest(REPO, NAME), policy=FAST_RETRY)
    assert not list(hub.hf_cache_dir().rglob("blobs/*[0-9a-f]"))


def test_huggingface_hub_finds_our_download_and_we_find_its(repo, payload):
    """The cache is shared with other tools: each side sees the other's files without downloading again."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cache = hub.hf_cache_dir()
    ours = download(DownloadRequest(REPO, NAME))
    assert try_to_load_from_cache(REPO, NAME, cache_dir=cache) == str(ours)
    gets = len(_cdn_gets(repo))
    assert hf_hub_download(REPO, NAME, cache_dir=cache) == str(ours)
    theirs = hf_hub_download(REPO, "second.gguf", cache_dir=cache)
    assert len(_cdn_gets(repo)) == gets  # nothing fetched for ours
    second_gets = len(_cdn_gets(repo, "second.gguf"))
    assert download(DownloadRequest(REPO, "second.gguf")) == Path(theirs)
    assert len(_cdn_gets(repo, "second.gguf")) == second_gets
