"""The download manager: hub files into the standard Hugging Face cache, verified, resumable, queued.

huggingface_hub's own hf_hub_download throws its partial file away when a call fails and does not check the
bytes against the hub's SHA-256 (ARCHITECTURE §5), so this module owns the transfer itself while using
huggingface_hub for everything else: the file URL (HF_ENDPOINT), the metadata HEAD (commit, LFS sha256, size),
the auth headers (the user's login) and the shared HTTP session.

A transfer writes ``blobs/<sha256>.llamadesk-part`` in the repository's cache folder, with Range requests from
the bytes already there (after a dropped connection, a stall, a pause or an app restart), hashed by a thread that
reads behind the writer (core/models/downloads/trailing_hash.py), and only a file whose SHA-256 matches is moved to
``blobs/<sha256>`` and linked from ``snapshots/<commit>/<file>`` (plus ``refs/<branch>``) — the layout
huggingface_hub and its cache scanner use, so other tools see the file (core/models/downloads/cache_layout.py).

Every attempt that ends before the last byte waits a backoff, and too many in a row without progress end the
download with its bytes kept (RetryPolicy): no server, broken or hostile, keeps it looping.

    manager = DownloadManager(on_progress=print)
    job = manager.enqueue(DownloadRequest("Qwen/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q8_0.gguf"))
    path = manager.wait(job).path
"""
from __future__ import annotations

import enum
import errno
import itertools
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from huggingface_hub import get_hf_file_metadata, hf_hub_url
from huggingface_hub.utils import build_hf_headers

from core.models import hub, safe_names
from core.models.downloads.cache_layout import HubCacheLayout
from core.models.downloads.trailing_hash import TrailingSha256
from core.models.downloads.transfer import (
    ByteStream,
    StreamBroken,
    StreamRedirectRefused,
    StreamRefused,
    StreamUntrusted,
    open_byte_stream,
)
from core.platform import locations
from core.platform.units import format_bytes

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(?:\d+|\*)$")


# -- errors ---------------------------------------------------------------------------------------------------------
class DownloadError(Exception):
    """A download failed; the message says why in a sentence a user can read."""


class ChecksumMismatch(DownloadError):
    pass


class NotEnoughDiskSpace(DownloadError):
    pass


class AccessDenied(DownloadError):
    pass


class NotFound(DownloadError):
    pass


class UnsafeName(DownloadError):
    """A name from the request or the hub (file, revision, repository, commit, SHA-256) that cannot become a path."""


UnsafeFileName = UnsafeName  # the name core/cli and older callers import


class NetworkError(DownloadError):
    pass


class _Stopped(Exception):
    """Internal: the user paused or cancelled the transfer."""


def _as_download_error(error: Exception, what: str) -> DownloadError:
    if isinstance(error, DownloadError):
        return error
    if isinstance(error, safe_names.UnsafeName):
        return UnsafeName(str(error))
    explained = hub.explain_hub_error(error, what)
    kind = {hub.HubAccessDenied: AccessDenied, hub.HubNotFound: NotFound,
            hub.HubUnreachable: NetworkError}.get(type(explained), DownloadError)
    return kind(str(explained))


# -- values ---------------------------------------------------------------------------------------------------------
class DownloadState(str, enum.Enum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (DownloadState.DONE, DownloadState.FAILED, DownloadState.CANCELLED)


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch; ``sha256``/``size`` from the hub listing when known (the HEAD also gives them)."""

    repo_id: str
    filename: str
    revision: str = "main"
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class DownloadProgress:
    """What a progress callback receives, and what status() returns."""

    job_id: str
    repo_id: str
    filename: str
    state: DownloadState
    bytes_done: int
    total_bytes: int | None
    speed_bytes_per_second: float
    eta_seconds: float | None
    path: Path | None = None
    error: str | None = None
    checked_bytes: int = 0          # how far the SHA-256 check has read (it follows the transfer)


@dataclass(frozen=True)
class RetryPolicy:
    """Stall detection and backoff: a read that waits ``stall_seconds`` counts as a stall.

    Every attempt that ends before the last byte (a dropped or stalled connection, a body that stops short, a
    server that ignores Range, a 5xx) waits ``backoff`` before the next one. An attempt that moved the file on by
    less than ``min_progress_bytes`` counts as a failure, so a server that sends nothing new, or a trickle, gives
    up after ``max_retries`` such attempts in a row instead of looping.
    """

    stall_seconds: float = 30.0
    max_retries: int = 6            # consecutive attempts without progress
    first_backoff: float = 1.0
    max_backoff: float = 30.0
    min_progress_bytes: int = 64 << 10

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.first_backoff * (2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class _Target:
    """A resolved hub file: where to fetch it and what it must hash to."""

    url: str
    commit: str
    sha256: str
    size: int


@dataclass
class _Job:
    id: str
    request: DownloadRequest
    state: DownloadState = DownloadState.QUEUED
    bytes_done: int = 0
    total_bytes: int | None = None
    speed: float = 0.0
    path: Path | None = None
    error: DownloadError | None = None
    sha256: str | None = None
    checked_bytes: int = 0
    stop: str | None = None            # "pause" or "cancel", set by the user
    finished: threading.Event = field(default_factory=threading.Event)


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the disk holding ``path`` (or its nearest existing parent)."""
    for candidate in [path, *path.parents]:
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 0


# -- one transfer ---------------------------------------------------------------------------------------------------
class _Transfer:
    """Fetch one resolved file into its part file, resuming, retrying and hashing; then verify and place it."""

    def __init__(self, job: _Job, target: _Target, layout: HubCacheLayout, policy: RetryPolicy,
                 report: Callable[[], None], chunk_size: int, progress_interval: float) -> None:
        self.job, self.target, self.layout, self.policy = job, target, layout, policy
        self.report, self.chunk_size, self.progress_interval = report, chunk_size, progress_interval
        self.part = layout.part(target.sha256)
        self.done = 0
        self.hasher: TrailingSha256 | None = None
        self._last_check_report = 0.0

    def run(self) -> Path:
        try:
            self._keep_existing_part()
            self.hasher = TrailingSha256(self.part)
            self._transfer()
            return self._verify_and_place()
        finally:
            if self.hasher is not None:
                self.hasher.close()

    def _transfer(self) -> None:
        """Attempts until the last byte is in; each one that ends early waits a backoff, and too many in a row
        without progress end the download with its bytes kept."""
        failures = 0
        while self.done < self.target.size:
            before = self.done
            try:
                self._stream_once()
                problem = "the server stopped sending before the end of the file"
            except (StreamBroken, NetworkError) as error:
                problem = str(error)
            if self.done >= self.target.size:
                return
            failures = 0 if self._progressed(before) else failures + 1
            if failures > self.policy.max_retries:
                raise NetworkError(
                    f"The download of {self.job.request.filename} kept failing ({problem}, {failures} tries in a "
                    f"row without progress); {format_bytes(self.done)} of {format_bytes(self.target.size)} are "
                    "kept — resume it later.")
            delay = self.policy.backoff(max(failures, 1))
            log.warning("%s: %s at byte %d; retrying in %.2f s", self.job.request.filename, problem, self.done,
                        delay)
            self._sleep(delay)

    def _progressed(self, before: int) -> bool:
        """Whether an attempt moved the file on enough to count as progress (a trickle does not)."""
        wanted = min(self.policy.min_progress_bytes, self.target.size - before)
        return self.done - before >= max(1, wanted)

    def _keep_existing_part(self) -> None:
        """Resume from the bytes a paused, dropped or interrupted transfer left (the hasher reads them too)."""
        if not self.part.is_file():
            return
        size = self.part.stat().st_size
        if size > self.target.size:
            self.part.unlink()
            return
        self.done = size
        log.info("resuming %s from byte %d", self.job.request.filename, size)

    def _stream_once(self) -> None:
        headers = build_hf_headers()
        headers["Accept-Encoding"] = "identity"
        if self.done:
            headers["Range"] = f"bytes={self.done}-"
        try:
            stream = open_byte_stream(self.target.url, headers, stall_seconds=self.policy.stall_seconds)
        except StreamRefused as error:
            raise self._refusal(error) from error
        except StreamUntrusted as error:  # not retried: a certificate does not become trusted by waiting
            raise DownloadError(f"Cannot download {self.job.request.filename}: {error}.") from error
        with stream:  # an HTTP error status came as StreamRefused: this is a 200 or a 206
            if self._skip_to_done(stream):
                self._write_body(stream)

    def _skip_to_done(self, stream: ByteStream) -> bool:
        """Read past the bytes already on disk when the body starts before them (a server that ignores Range
        sends the file from byte 0), so a resume never throws bytes away; False if the body ends first."""
        start = self._body_start(stream)
        if start < self.done:
            log.warning("the server sent %s from byte %d, not %d; skipping the bytes already here",
                        self.job.request.filename, start, self.done)
        to_skip = self.done - start
        while to_skip > 0:
            self._check_stop()
            block = stream.read(min(to_skip, self.chunk_size))
            if not block:
                return False
            to_skip -= len(block)
        return True

    def _body_start(self, stream: ByteStream) -> int:
        if stream.status != 206:
            return 0
        match = _CONTENT_RANGE.match(stream.headers.get("Content-Range", ""))
        start = int(match.group(1)) if match else None
        if start is None or start > self.done:
            raise StreamBroken(f"the server sent a different part of the file than asked for "
                               f"({stream.headers.get('Content-Range')!r} for bytes {self.done}-)")
        return start

    def _refusal(self, error: StreamRefused) -> DownloadError:
        what = f"{self.job.request.repo_id}/{self.job.request.filename}"
        if isinstance(error, StreamRedirectRefused):
            return DownloadError(f"Cannot download {what}: {error}.")
        if error.status in (408, 429) or error.status >= 500:
            return NetworkError(f"the server answered HTTP {error.status}")
        reason = f": {error.reason}" if error.reason else ""
        if error.status in (401, 403):
            return AccessDenied(f"The hub refused access to {what} (HTTP {error.status}{reason}); check your "
                                "Hugging Face login (a gated model also needs its terms accepted on the website).")
        if error.status == 404:
            return NotFound(f"{what} was not found on the hub (HTTP 404).")
        if error.status == 416:
            self.part.unlink(missing_ok=True)  # the hub's announced size was wrong: these bytes cannot be completed
            return DownloadError(
                f"The hub announced {format_bytes(self.target.size)} for {what} but has no bytes from byte "
                f"{self.done} on (HTTP 416); the partial file was deleted.")
        return DownloadError(f"The hub refused the download of {what} (HTTP {error.status}{reason}).")

    def _write_body(self, stream: ByteStream) -> None:
        mode = "ab" if self.done else "wb"
        try:
            with open(self.part, mode, buffering=0) as handle:
                self._copy(stream, handle)
        except OSError as error:
            raise _disk_error(error, self.part) from error
        self.job.bytes_done = self.done

    def _copy(self, stream: ByteStream, handle) -> None:
        """Received bytes are batched to ``chunk_size`` blocks, each written once.

        Each read returns what one socket read brought, and the batch is flushed even when the connection
        drops, so no received byte is lost and a resume starts exactly where the bytes stopped.
        """
        pending: list[bytes] = []
        pending_bytes = 0
        last_report = time.monotonic()
        window_start, window_bytes = last_report, 0
        try:
            while chunk := stream.read(self.chunk_size):
                self._check_stop()
                if self.done + pending_bytes + len(chunk) > self.target.size:
                    raise ChecksumMismatch(f"The hub sent more bytes for {self.job.request.filename} than its "
                                           "listed size; the download was stopped.")
                pending.append(chunk)
                pending_bytes += len(chunk)
                window_bytes += len(chunk)
                if pending_bytes < self.chunk_size:
                    continue
                self._flush(handle, pending)
                pending, pending_bytes = [], 0
                now = time.monotonic()
                if now - last_report >= self.progress_interval:
                    self.job.speed = window_bytes / max(now - window_start, 1e-6)
                    self.job.bytes_done = self.done
                    self.report()
                    last_report = now
                    if now - window_start > 3.0:
                        window_start, window_bytes = now, 0
        finally:
            self._flush(handle, pending)

    def _flush(self, handle, pending: list[bytes]) -> None:
        if not pending:
            return
        block = pending[0] if len(pending) == 1 else b"".join(pending)
        view = memoryview(block)
        while view:
            view = view[handle.write(view):]
        self.done += len(block)
        self.hasher.written(self.done)

    def _verify_and_place(self) -> Path:
        self.job.state = DownloadState.VERIFYING
        self.report()
        try:
            actual = self.hasher.hexdigest(self.done, should_stop=lambda: self.job.stop is not None,
                                           while_waiting=self._report_check)
        except InterruptedError:
            raise _Stopped(self.job.stop or "pause") from None
        except OSError as error:
            raise DownloadError(f"Cannot read {self.part} back to check it: {error.strerror or error}.") from error
        if actual != self.target.sha256:
            self.part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{self.job.request.filename} did not match the hub's SHA-256 (expected {self.target.sha256[:12]}…, "
                f"got {actual[:12]}…). The damaged file was deleted and will not be offered for loading; try the "
                "download again.")
        return self.layout.place(self.part, self.target.sha256, self.target.commit, self.job.request.filename,
                                 self.job.request.revision)

    def _report_check(self, hashed: int) -> None:
        now = time.monotonic()
        if now - self._last_check_report >= self.progress_interval:
            self.job.checked_bytes = hashed
            self.report()
            self._last_check_report = now

    def _check_stop(self) -> None:
        if self.job.stop:
            raise _Stopped(self.job.stop)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._check_stop()
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def _disk_error(error: OSError, path: Path) -> DownloadError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return NotEnoughDiskSpace(f"The disk holding {path.parent} is full; the bytes downloaded so far are kept. "
                                  "Free some space and resume the download.")
    return DownloadError(f"Cannot write {path}: {error.strerror or error}.")


# -- the manager ----------------------------------------------------------------------------------------------------
ProgressCallback = Callable[[DownloadProgress], None]


class DownloadManager:
    """A queue of downloads run by ``max_parallel`` worker threads; state survives restarts in ``state_file``.

    Callbacks run on worker threads: the desktop layer turns them into signals.
    """

    def __init__(self, *, cache_dir: Path | None = None, state_file: Path | None = None, persist: bool = True,
                 max_parallel: int = 1,
                 on_progress: ProgressCallback | None = None, policy: RetryPolicy = RetryPolicy(),
                 free_space: Callable[[Path], int] = disk_free_bytes, space_margin: int = 64 << 20,
                 chunk_size: int = 1 << 20, progress_interval: float = 0.25) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else hub.hf_cache_dir()
        self.state_file = Path(state_file) if state_file else locations.data_dir() / "downloads.json"
        self.persist = persist
        self.max_parallel = max(1, max_parallel)
        self.on_progress = on_progress
        self.policy = policy
        self.free_space = free_space
        self.space_margin = space_margin
        self.chunk_size = chunk_size
        self.progress_interval = progress_interval
        self._jobs: dict[str, _Job] = {}
        self._queue: list[str] = []
        self._lock = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._ids = itertools.count(1)

    # -- public API ------------------------------------------------------------------------------------------------
    def enqueue(self, request: DownloadRequest) -> str:
        """Queue a file; returns its job id. Unsafe names are refused here, before any request."""
        check_request(request)
        with self._lock:
            for job in self._jobs.values():
                if job.request == request and not job.state.finished:
                    return job.id
            job = self._new_job(request)
            self._queue.append(job.id)
            self._save_state()
            self._start_workers()
            self._lock.notify_all()
        self._report(job)
        return job.id

    def pause(self, job_id: str) -> None:
        """Stop transferring, keep the bytes; resume() continues from there (also after a restart)."""
        with self._lock:
            job = self._jobs[job_id]
            if job.state == DownloadState.QUEUED:
                self._queue.remove(job_id)
                job.state = DownloadState.PAUSED
            elif job.state in (DownloadState.DOWNLOADING, DownloadState.VERIFYING):
                job.stop = "pause"
            self._save_state()
        self._report(job)

    def resume(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            if job.state in (DownloadState.PAUSED, DownloadState.FAILED):
                job.state, job.error, job.stop = DownloadState.QUEUED, None, None
                job.finished.clear()
                self._queue.append(job_id)
                self._save_state()
                self._start_workers()
                self._lock.notify_all()
        self._report(job)

    def cancel(self, job_id: str) -> None:
        """Stop and delete the partial file."""
        with self._lock:
            job = self._jobs[job_id]
            if job.state in (DownloadState.DOWNLOADING, DownloadState.VERIFYING):
                job.stop = "cancel"
                return
            if job_id in self._queue:
                self._queue.remove(job_id)
            if not job.state.finished or job.state == DownloadState.FAILED:
                self._finish(job, DownloadState.CANCELLED)
                self._delete_part(job)
        self._report(job)

    def status(self, job_id: str) -> DownloadProgress:
        with self._lock:
            return self._progress(self._jobs[job_id])

    def all(self) -> list[DownloadProgress]:
        with self._lock:
            return [self._progress(job) for job in self._jobs.values()]

    def wait(self, job_id: str, timeout: float | None = None) -> DownloadProgress:
        """Block until the job is done, failed or cancelled (or paused, which also ends a transfer)."""
        job = self._jobs[job_id]
        job.finished.wait(timeout)
        return self.status(job_id)

    def error(self, job_id: str) -> DownloadError | None:
        return self._jobs[job_id].error

    def restore(self, *, start: bool = False) -> list[str]:
        """Reload unfinished downloads from the state file (after an app restart): paused, or queued if start."""
        try:
            saved = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return []
        restored = []
        with self._lock:
            known = {job.request for job in self._jobs.values()}
            for item in saved.get("jobs", []):
                try:
                    request = check_request(DownloadRequest(**item["request"]))
                    sha256 = item.get("sha256")
                    if sha256 is not None:
                        safe_names.check_sha256(sha256, where=request.filename)
                except (TypeError, KeyError, UnsafeName, safe_names.UnsafeName):
                    log.warning("Ignoring an unreadable saved download: %r", item)
                    continue
                if request in known:
                    continue
                job = self._new_job(request)
                job.state = DownloadState.PAUSED
                job.bytes_done = int(item.get("bytes_done", 0))
                job.total_bytes = item.get("total_bytes")
                job.sha256 = sha256
                job.finished.set()
                restored.append(job.id)
            self._save_state()
        for job_id in restored:
            if start:
                self.resume(job_id)
        return restored

    def close(self, timeout: float = 10.0) -> None:
        """Pause running transfers (their bytes are kept) and stop the workers."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                if job.state in (DownloadState.DOWNLOADING, DownloadState.VERIFYING):
                    job.stop = "pause"
            self._lock.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    # -- workers ---------------------------------------------------------------------------------------------------
    def _new_job(self, request: DownloadRequest) -> _Job:
        job = _Job(f"d{next(self._ids)}", request, total_bytes=request.size, sha256=request.sha256)
        self._jobs[job.id] = job
        return job

    def _start_workers(self) -> None:
        self._workers = [w for w in self._workers if w.is_alive()]
        while len(self._workers) < self.max_parallel:
            worker = threading.Thread(target=self._work, name=f"download-{len(self._workers)}", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = self._jobs[self._queue.pop(0)]
                job.state, job.stop = DownloadState.DOWNLOADING, None
            self._report(job)
            self._run(job)

    def _run(self, job: _Job) -> None:
        try:
            path = self._download(job)
        except _Stopped as stop:
            outcome = DownloadState.CANCELLED if str(stop) == "cancel" else DownloadState.PAUSED
            if outcome == DownloadState.CANCELLED:
                self._delete_part(job)
            with self._lock:
                self._finish(job, outcome)
        except Exception as error:  # every failure becomes a DownloadError with a sentence
            failure = _as_download_error(error, f"{job.request.repo_id}/{job.request.filename}")
            log.warning("download of %s failed: %s", job.request.filename, failure)
            with self._lock:
                job.error = failure
                self._finish(job, DownloadState.FAILED)
        else:
            with self._lock:
                job.path, job.bytes_done = path, job.total_bytes or job.bytes_done
                self._finish(job, DownloadState.DONE)
        self._report(job)

    def _finish(self, job: _Job, state: DownloadState) -> None:
        job.state, job.speed, job.stop = state, 0.0, None
        self._save_state()
        job.finished.set()

    def _download(self, job: _Job) -> Path:
        request = job.request
        target = _resolve(request)
        job.sha256, job.total_bytes = target.sha256, target.size
        with self._lock:
            self._save_state()
        layout = HubCacheLayout(self.cache_dir, request.repo_id)
        existing = self._already_cached(layout, target, request)
        if existing is not None:
            return existing
        layout.pointer(target.commit, request.filename)  # where the file will be linked: checked before any byte
        if request.revision != target.commit:
            layout.ref(request.revision)
        layout.prepare()
        self._check_space(layout, target, request.filename)
        transfer = _Transfer(job, target, layout, self.policy, lambda: self._report(job), self.chunk_size,
                             self.progress_interval)
        return transfer.run()

    def _already_cached(self, layout: HubCacheLayout, target: _Target, request: DownloadRequest) -> Path | None:
        blob = layout.blob(target.sha256)
        if not blob.is_file() or blob.stat().st_size != target.size:
            return None
        pointer = layout.pointer(target.commit, request.filename)
        if not pointer.exists():
            layout.link(target.sha256, target.commit, request.filename)
        return pointer

    def _check_space(self, layout: HubCacheLayout, target: _Target, filename: str) -> None:
        part = layout.part(target.sha256)
        have = part.stat().st_size if part.exists() else 0
        needed = target.size - have
        free = self.free_space(layout.repo_dir)
        if free < needed + self.space_margin:
            raise NotEnoughDiskSpace(
                f"Not enough free disk space for {filename}: it needs {format_bytes(needed)} more and "
                f"{layout.repo_dir.parent} has {format_bytes(free)} free.")

    def _delete_part(self, job: _Job) -> None:
        if job.sha256 and safe_names.is_sha256(job.sha256):
            HubCacheLayout(self.cache_dir, job.request.repo_id).part(job.sha256).unlink(missing_ok=True)

    # -- reporting and state ---------------------------------------------------------------------------------------
    def _progress(self, job: _Job) -> DownloadProgress:
        remaining = (job.total_bytes - job.bytes_done) if job.total_bytes is not None else None
        eta = remaining / job.speed if remaining is not None and job.speed > 0 else None
        return DownloadProgress(job.id, job.request.repo_id, job.request.filename, job.state, job.bytes_done,
                                job.total_bytes, job.speed, eta, job.path, str(job.error) if job.error else None,
                                job.checked_bytes)

    def _report(self, job: _Job) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(self._progress(job))
        except Exception:  # a broken listener must not break the download
            log.exception("download progress callback failed")

    def _save_state(self) -> None:
        """Persist unfinished jobs (called with the lock held)."""
        if not self.persist:
            return
        jobs = [{"request": asdict(job.request), "bytes_done": job.bytes_done, "total_bytes": job.total_bytes,
                 "sha256": job.sha256, "state": job.state.value}
                for job in self._jobs.values() if not job.state.finished or job.state == DownloadState.FAILED]
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            partial = self.state_file.with_name(self.state_file.name + ".tmp")
            partial.write_text(json.dumps({"schema": 1, "jobs": jobs}, indent=1))
            os.replace(partial, self.state_file)
        except OSError as error:
            log.warning("could not save the download queue to %s: %s", self.state_file, error)


# -- resolving ------------------------------------------------------------------------------------------------------
def check_request(request: DownloadRequest) -> DownloadRequest:
    """``request`` if its repository, file name, revision and SHA-256 can become paths; else UnsafeName."""
    try:
        safe_names.check_repo_id(request.repo_id)
        safe_names.check_file_name(request.filename)
        safe_names.check_revision(request.revision)
        if request.sha256 is not None:
            safe_names.check_sha256(request.sha256.lower(), where=f"{request.repo_id}/{request.filename}")
    except safe_names.UnsafeName as error:
        raise UnsafeName(str(error)) from error
    return request


def _resolve(request: DownloadRequest) -> _Target:
    """Ask the hub (HEAD on the file URL) for the commit, LFS sha256 and size; refuse what cannot be verified, and
    names that cannot become paths."""
    what = f"{request.repo_id}/{request.filename}"
    if hub.is_offline():
        raise NetworkError(f"Cannot download {what}: offline mode is on (HF_HUB_OFFLINE).")
    url = hf_hub_url(request.repo_id, request.filename, revision=request.revision, endpoint=hub.endpoint())
    try:
        meta = get_hf_file_metadata(url, endpoint=hub.endpoint(), retry_on_errors=True)
    except Exception as error:
        raise _as_download_error(error, what) from error
    try:
        return _Target(url, _resolved_commit(meta.commit_hash, request, what),
                       _resolved_sha256(meta.etag, request, what), _resolved_size(meta.size, request, what))
    except safe_names.UnsafeName as error:
        raise UnsafeName(str(error)) from error


def _resolved_commit(announced: str | None, request: DownloadRequest, what: str) -> str:
    if announced is not None:
        return safe_names.check_commit(announced, where=what)
    if safe_names.is_commit(request.revision):
        return request.revision
    raise DownloadError(f"The hub did not say which commit {what} belongs to.")


def _resolved_sha256(etag: str | None, request: DownloadRequest, what: str) -> str:
    """The LFS SHA-256 the hub announced (its ETag), else the one from the listing; what the bytes must hash to."""
    announced = (etag or "").lower()
    listed = (request.sha256 or "").lower()
    if safe_names.is_sha256(announced):
        if listed and listed != announced:
            log.warning("%s changed on the hub since it was listed; fetching the current file", what)
        return announced
    if listed:
        return listed  # check_request has checked it
    if not announced or safe_names.is_commit(announced):  # none, or a git object id: a small non-LFS file
        raise DownloadError(f"The hub gave no SHA-256 for {what}, so the download could not be verified; "
                            "LlamaDesk only downloads model files it can check.")
    return safe_names.check_sha256(announced, where=what)


def _resolved_size(announced: int | None, request: DownloadRequest, what: str) -> int:
    size = announced if announced is not None else request.size
    if size is None:
        raise DownloadError(f"The hub did not say how large {what} is.")
    if size < 0:
        raise DownloadError(f"The hub gave a negative size ({size}) for {what}; nothing was downloaded.")
    return size


def download(request: DownloadRequest, *, on_progress: ProgressCallback | None = None, **options) -> Path:
    """Download one file now (blocking) and return its path in the HF cache; raises DownloadError."""
    options.setdefault("persist", False)  # the app's saved queue belongs to the app's own manager
    manager = DownloadManager(on_progress=on_progress, **options)
    try:
        job_id = manager.enqueue(request)
        result = manager.wait(job_id)
        if result.state != DownloadState.DONE:
            raise manager.error(job_id) or DownloadError(f"The download of {request.filename} stopped "
                                                         f"({result.state.value}).")
        assert result.path is not None
        return result.path
    finally:
        manager.close()
