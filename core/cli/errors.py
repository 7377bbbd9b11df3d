"""How the CLI reports a failure: one line on stderr naming what is wrong, and a non-zero exit."""
from __future__ import annotations

import sys

EXIT_FAILURE = 1


def fail(message: str) -> int:
    print(f"llamadesk-cli: error: {message}", file=sys.stderr)
    return EXIT_FAILURE
