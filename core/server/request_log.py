"""What the server tells whoever watches it (the GUI's request log, the CLI's verbose log): one record when a
request starts answering and one when it ends, with its figures."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class RequestRecord:
    endpoint: str                      # "/v1/chat/completions" ...
    model: str
    status: int                        # the HTTP status (200 while answering)
    answering: bool                    # True: the engine started on it; False: it ended
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_per_second: float = 0.0
    seconds: float = 0.0
    stream: bool = False
    note: str = ""                     # the error's sentence, or "cancelled" for a client that left
    at: float = field(default_factory=time.time)


RequestObserver = Callable[[RequestRecord], None]
