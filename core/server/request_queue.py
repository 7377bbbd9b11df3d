"""Slots and the line of requests waiting for one.

A request holds a slot while the engine answers it. Today the engine answers one request at a time (one slot);
when it runs several llama.cpp sequences the host opens as many slots and nothing above it changes. Requests
beyond the waiting limit are refused at once (QueueFull) rather than left hanging.

acquire() is awaited on the server's event loop; release() may be called from any thread (an answer's worker
thread releases its slot when the engine has really finished, after a client left too).
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque


class QueueFull(Exception):
    """Every slot is busy and the waiting line is full."""


class SlotQueue:
    def __init__(self, slots: int, waiting_limit: int) -> None:
        if slots < 1:
            raise ValueError("A queue needs at least one slot.")
        self.slots = slots
        self.waiting_limit = waiting_limit
        self._free = slots
        self._waiters: deque[asyncio.Future] = deque()
        self._lock = threading.Lock()

    @property
    def busy(self) -> int:
        with self._lock:
            return self.slots - self._free

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(1 for waiter in self._waiters if not waiter.done())

    async def acquire(self) -> None:
        """Take a slot, waiting in line for one; QueueFull when the line is full."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            if len(self._waiters) >= self.waiting_limit:
                raise QueueFull()
            future = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
        try:
            await future
        except BaseException:
            with self._lock:
                still_waiting = future in self._waiters
                if still_waiting:
                    self._waiters.remove(future)
            if not still_waiting and future.done() and not future.cancelled():
                self.release()               # granted just as the waiter gave up: pass the slot on
            raise

    def release(self) -> None:
        """Give a slot back: to the first in line, else to the free pool. Thread-safe."""
        with self._lock:
            while self._waiters:
                future = self._waiters.popleft()
                if not future.done():
                    future.get_loop().call_soon_threadsafe(self._grant, future)
                    return
            self._free += 1

    def _grant(self, future: asyncio.Future) -> None:
        if future.cancelled():               # its request left between release() and now
            self.release()
        else:
            future.set_result(None)
