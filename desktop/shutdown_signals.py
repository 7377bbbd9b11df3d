"""Ending the app from outside as if its window were closed: SIGTERM (log-out, shutdown, `kill`), SIGHUP (the
terminal went away) and SIGINT (Ctrl+C in the terminal that started it).

Without this, those signals end the process on the spot: the conversation's last streamed words not yet
written, the window's layout not saved, downloads not paused, and the picker's worker processes left running.
Python runs a signal handler only when the interpreter gets control, which Qt's event loop does not give it
while idle; so the handler only writes a byte to a socket (signal.set_wakeup_fd) and a QSocketNotifier wakes
the event loop, which then closes the window through its normal path.
"""
from __future__ import annotations

import logging
import signal
import socket

from PySide6.QtCore import QObject, QSocketNotifier, Signal

log = logging.getLogger(__name__)

HANDLED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))


class ShutdownSignals(QObject):
    """Emits ``requested`` on the UI thread when one of HANDLED arrives; keep the object alive while the app runs."""

    requested = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._reader, self._writer = socket.socketpair()
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno())
        self._previous = {number: signal.signal(number, self._note) for number in HANDLED}
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._wake)

    @staticmethod
    def _note(number, _frame) -> None:
        pass  # the wake-up byte carries the signal number; the work happens on the event loop

    def _wake(self) -> None:
        try:
            data = self._reader.recv(64)
        except BlockingIOError:
            return
        for number in data:
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            log.info("%s received: closing the window as if the user had", name)
            self.requested.emit(name)

    def restore(self) -> None:
        """Give the signals back to their earlier handlers (tests; the end of the app)."""
        self._notifier.setEnabled(False)
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()
