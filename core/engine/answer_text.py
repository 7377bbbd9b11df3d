"""The answer as text while it streams: token bytes in, whole characters out, stop strings cut off.

A character can span tokens (emoji, CJK, accented letters in byte-level vocabularies): its bytes
wait in an incremental UTF-8 decoder until complete. Text that might be the beginning of a stop
string waits too, so a stop string never reaches the user even when it arrives in pieces.
"""
from __future__ import annotations

import codecs
from typing import Sequence


class AnswerText:
    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(text for text in stop if text)
        self._held = ""
        self._released: list[str] = []
        self.stopped = False                 # a stop string was seen; feed no more

    @property
    def text(self) -> str:
        return "".join(self._released)

    def feed(self, data: bytes) -> str:
        """Add a token's bytes; returns the text that is now safe to show (often "")."""
        if self.stopped:
            return ""
        new = self._decoder.decode(data)
        if not new:
            return ""
        if not self._stops:
            self._released.append(new)
            return new
        return self._release_before_stop(self._held + new)

    def finish(self) -> str:
        """The end of the answer: held text that turned out not to be a stop string is shown.

        Bytes of an unfinished character are dropped rather than shown as a replacement mark.
        """
        held, self._held = self._held, ""
        if held and not self.stopped:
            self._released.append(held)
            return held
        return ""

    def _release_before_stop(self, pending: str) -> str:
        cut = _first_stop(pending, self._stops)
        if cut is not None:
            self.stopped = True
            self._held = ""
            return self._release(pending[:cut])
        keep = _longest_partial_stop(pending, self._stops)
        self._held = pending[len(pending) - keep:] if keep else ""
        return self._release(pending[:len(pending) - keep])

    def _release(self, text: str) -> str:
        if text:
            self._released.append(text)
        return text


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return min(found) if found else None


def _longest_partial_stop(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of text that is the beginning of some stop string."""
    longest = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:length]):
                longest = length
                break
    return longest
