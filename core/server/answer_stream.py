"""One answer's events, carried from the engine (a blocking iterator on a worker thread) to the server's event loop.

The worker thread owns the lease: it releases the slot only when the engine has really finished, so the next
request never meets a half-finished answer. Leaving the iteration early (a client that disconnected, an error)
stops the engine's generation; the thread then drains the short remainder and frees the slot.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from core.engine.protocol import AnswerFinished, ChatEvent
from core.server.model_host import Generation, Lease


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()

# Told once, from the answer's thread, when the engine is done: its last event (None if it failed) and its error.
AnswerEnded = Callable[[AnswerFinished | None, BaseException | None], None]


class AnswerStream:
    def __init__(self, lease: Lease, generation: Generation, on_end: AnswerEnded = lambda answer, error: None) -> None:
        self.lease = lease
        self.generation = generation
        self._on_end = on_end
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._finished = False
        self._stop_asked = False
        self._thread = threading.Thread(target=self._pump, name="server-answer", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        finished: AnswerFinished | None = None
        failure: BaseException | None = None
        try:
            events = self.lease.chat(self.generation)
            if self._stop_asked:           # stop() came before the engine knew this answer's id
                self.lease.stop()
            for event in events:
                if isinstance(event, AnswerFinished):
                    finished = event
                self._put(event)
        except BaseException as error:  # noqa: BLE001 - handed to the reader, who turns it into an error object
            failure = error
            self._put(_Failed(error))
        finally:
            self.lease.release()
            self._put(_END)
            self._on_end(finished, failure)

    def _put(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:               # the loop is gone (server shut down): nobody reads any more
            pass

    def stop(self) -> None:
        """End the generation early (thread-safe); the events still arrive, ending with a cancelled answer."""
        if not self._finished:
            self._stop_asked = True
            self.lease.stop()

    async def events(self) -> AsyncIterator[ChatEvent]:
        """The engine's events up to AnswerFinished; an engine error is raised here."""
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                if isinstance(item, AnswerFinished):
                    self._finished = True
                yield item
        finally:
            self.stop()
