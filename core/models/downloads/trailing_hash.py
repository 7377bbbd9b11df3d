"""SHA-256 of a file that is still being written, computed by a thread that reads behind the writer.

A download that hashes each block before receiving the next one is as slow as SHA-256 plus the transfer; on a
fast link (a LAN mirror, a local proxy, loopback) that is most of the time. Here the writer only says how many
bytes are on disk, and a thread reads them back from the page cache and hashes them, so the transfer never
waits for the hash; on a link slower than SHA-256 (about 2 GB/s with SHA extensions) the hash has caught up when
the last byte arrives. The thread runs at a lower CPU priority where the platform allows it (Linux), so on a
busy machine it takes what the transfer and the window leave.

    hasher = TrailingSha256(part_path)
    ...write bytes..., then hasher.written(bytes_on_disk)
    digest = hasher.hexdigest(final_size)   # waits for the hash to catch up
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

READ_BLOCK = 1 << 20      # bytes read and hashed per step, as large as the blocks a download writes
BACKGROUND_NICE = 10      # how much lower than the writer the hashing thread runs (Linux only)


class HashReadError(OSError):
    """The file being hashed could not be read back, or it is shorter than what was written to it."""


class TrailingSha256:
    """Hashes ``path`` from byte 0 up to the size its writer reports; one file, one use."""

    def __init__(self, path: Path, *, read_block: int = READ_BLOCK) -> None:
        self.path = Path(path)
        self._read_block = read_block
        self._sha = hashlib.sha256()
        self._hashed = 0
        self._written = 0
        self._final: int | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="download-sha256", daemon=True)
        self._thread.start()

    # -- the writer's side ----------------------------------------------------------------------------------------
    def written(self, size: int) -> None:
        """``size`` bytes of the file are now on disk (cumulative, from byte 0)."""
        with self._changed:
            self._written = size
            if size - self._hashed >= self._read_block:
                self._changed.notify()

    @property
    def hashed_bytes(self) -> int:
        return self._hashed

    def hexdigest(self, size: int, *, should_stop: Callable[[], bool] = lambda: False,
                  while_waiting: Callable[[int], None] = lambda hashed: None) -> str:
        """Wait until the first ``size`` bytes are hashed and return their SHA-256.

        While waiting, ``while_waiting`` gets the bytes hashed so far and ``should_stop`` is asked whether to give
        up, every 50 ms; when it says so, hashing stops and InterruptedError is raised.
        """
        with self._changed:
            self._written = max(self._written, size)
            self._final = size
            self._changed.notify()
        while self._thread.is_alive():
            self._thread.join(0.05)
            while_waiting(self._hashed)
            if should_stop():
                self.close()
                raise InterruptedError("hashing was stopped")
        if self._error is not None:
            raise self._error
        if self._hashed != size:
            raise HashReadError(f"{self.path} ended after {self._hashed} of {size} bytes")
        return self._sha.hexdigest()

    def close(self) -> None:
        """Stop hashing (the file is abandoned, paused or about to be rewritten)."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # -- the hashing thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        _lower_this_threads_priority()
        buffer = bytearray(self._read_block)
        view = memoryview(buffer)
        handle = None
        try:
            while (end := self._next_end()) is not None:
                if handle is None:
                    handle = open(self.path, "rb", buffering=0)
                self._hash_up_to(handle, end, view)
        except BaseException as error:  # handed to the waiting writer, which turns it into its own error
            self._error = error
        finally:
            if handle is not None:
                handle.close()

    def _next_end(self) -> int | None:
        """Wait for a full read block (or the final size) to be on disk; None when there is nothing more to do."""
        with self._changed:
            while not self._closed:
                if self._final is not None:
                    return self._final if self._hashed < self._final else None
                if self._written - self._hashed >= self._read_block:
                    return self._written
                self._changed.wait()
            return None

    def _hash_up_to(self, handle, end: int, view: memoryview) -> None:
        while self._hashed < end and not self._closed:
            handle.seek(self._hashed)  # the handle is this thread's own
            count = handle.readinto(view[: min(len(view), end - self._hashed)]) or 0
            if count == 0:
                raise HashReadError(f"{self.path} ended after {self._hashed} bytes; {end} were written")
            self._sha.update(view[:count])
            self._hashed += count


def _lower_this_threads_priority() -> None:
    # On Linux a thread has its own nice value, addressed by its native id; elsewhere it would renice the whole
    # process (the window included), so it is left alone.
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except OSError:
            pass
