"""SHA-256 of a file while it is being written: the digest a download is checked against."""
from __future__ import annotations

import hashlib
import os
import threading

import pytest

from core.models.downloads.trailing_hash import HashReadError, TrailingSha256

BLOCK = 64 << 10


def _write_in_pieces(path, data: bytes, hasher: TrailingSha256, piece: int) -> None:
    with open(path, "wb", buffering=0) as handle:
        for start in range(0, len(data), piece):
            handle.write(data[start:start + piece])
            hasher.written(min(len(data), start + piece))


@pytest.mark.parametrize("piece", [1000, BLOCK, 3 * BLOCK + 7])
def test_the_digest_is_the_files_sha256_whatever_the_write_sizes(tmp_path, piece):
    data = os.urandom(10 * BLOCK + 123)
    path = tmp_path / "model.part"
    path.touch()
    hasher = TrailingSha256(path, read_block=BLOCK)
    _write_in_pieces(path, data, hasher, piece)
    assert hasher.hexdigest(len(data)) == hashlib.sha256(data).hexdigest()
    assert hasher.hashed_bytes == len(data)


def test_bytes_already_on_disk_are_hashed_too(tmp_path):
    """A resumed download: the part file holds bytes from before, the writer appends after them."""
    data = os.urandom(5 * BLOCK)
    path = tmp_path / "model.part"
    path.write_bytes(data[:2 * BLOCK + 5])
    hasher = TrailingSha256(path, read_block=BLOCK)
    hasher.written(2 * BLOCK + 5)
    with open(path, "ab", buffering=0) as handle:
        handle.write(data[2 * BLOCK + 5:])
    assert hasher.hexdigest(len(data)) == hashlib.sha256(data).hexdigest()


def test_the_hash_keeps_up_while_the_writer_is_still_writing(tmp_path):
    data = os.urandom(40 * BLOCK)
    path = tmp_path / "model.part"
    path.touch()
    hasher = TrailingSha256(path, read_block=BLOCK)
    _write_in_pieces(path, data[:30 * BLOCK], hasher, BLOCK)
    deadline = threading.Event()
    for _ in range(200):
        if hasher.hashed_bytes >= 29 * BLOCK:
            break
        deadline.wait(0.01)
    assert hasher.hashed_bytes >= 29 * BLOCK, "the hash waited for the end instead of following the writer"
    hasher.close()


def test_a_file_shorter_than_what_was_written_is_an_error(tmp_path):
    path = tmp_path / "model.part"
    path.write_bytes(b"x" * 100)
    hasher = TrailingSha256(path, read_block=BLOCK)
    with pytest.raises(HashReadError, match="ended after 100"):
        hasher.hexdigest(500)


def test_a_missing_file_is_an_error(tmp_path):
    hasher = TrailingSha256(tmp_path / "gone.part", read_block=BLOCK)
    with pytest.raises(FileNotFoundError):
        hasher.hexdigest(10)


def test_waiting_for_the_digest_can_be_stopped(tmp_path):
    """Pausing a download while its hash catches up (here: 2 GiB still to hash) ends the wait at once."""
    path = tmp_path / "model.part"
    with open(path, "wb") as handle:
        handle.truncate(2 << 30)  # sparse: no disk used
    hasher = TrailingSha256(path)
    hasher.written(2 << 30)
    with pytest.raises(InterruptedError):
        hasher.hexdigest(2 << 30, should_stop=lambda: True)
    assert hasher.hashed_bytes < 2 << 30


def _hashing_threads() -> int:
    return sum(thread.name == "download-sha256" for thread in threading.enumerate())


def test_close_ends_the_hashing_thread(tmp_path):
    before = _hashing_threads()
    path = tmp_path / "model.part"
    path.touch()
    hasher = TrailingSha256(path, read_block=BLOCK)
    assert _hashing_threads() == before + 1
    hasher.close()
    assert _hashing_threads() == before


def test_waiting_for_the_digest_reports_how_far_the_check_has_read(tmp_path):
    """What the downloads list shows as "Checking SHA-256 · 40 %" when the check lags behind the transfer."""
    size = 512 << 20
    path = tmp_path / "model.part"
    with open(path, "wb") as handle:
        handle.truncate(size)
    hasher = TrailingSha256(path)
    seen: list[int] = []
    digest = hasher.hexdigest(size, while_waiting=seen.append)
    assert digest == hashlib.sha256(bytes(size)).hexdigest()
    assert seen, "no progress while the check ran"
    assert seen == sorted(seen) and all(0 <= hashed <= size for hashed in seen)
