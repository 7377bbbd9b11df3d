"""Telling the engine which conversation comes next, so that its answer starts sooner.

While the user reads a chat or types a question the engine is idle. A short pause after a chat is shown or the
draft changes sends it the conversation with the draft as the next question (EngineClient.prepare): the engine
brings the chat's KV state back into a slot (a parked one is restored) and evaluates what it can while nothing
else asks, giving way to any real request. When the question is sent, only what changed since is evaluated,
which in a long chat on a slow machine is most of the time to first token. Nothing is prepared while an answer
runs or a model loads, for a remote model, or with files attached (their text is chosen when the question is sent).
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QTimer

from core.engine.protocol import ThinkingChoice

PREPARE_PAUSE_MS = 700     # a pause in typing, or a chat looked at rather than skimmed past

NextTurn = tuple[list[dict], ThinkingChoice]


class DraftPreparer(QObject):
    """`next_turn()` gives the messages the next question would send (None: nothing to prepare)."""

    def __init__(self, prepare: Callable[[list[dict], ThinkingChoice], None],
                 next_turn: Callable[[], NextTurn | None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._prepare = prepare
        self._next_turn = next_turn
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREPARE_PAUSE_MS)
        self._timer.timeout.connect(self._send)

    def schedule(self) -> None:
        """Something changed (a chat shown, the draft edited): prepare after the pause, counted from now."""
        self._timer.start()

    def cancel(self) -> None:
        self._timer.stop()

    def _send(self) -> None:
        next_turn = self._next_turn()
        if next_turn is not None:
            self._prepare(*next_turn)
