"""Why a model did not load, in words: from the file itself and from llama.cpp's log lines."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.engine.protocol import FailureKind

GGUF_MAGIC = b"GGUF"

_ARCHITECTURE = re.compile(r"unknown model architecture: '([^']*)'")
_ATTEMPTED = re.compile(r"attempted to allocate\s+([0-9.]+) MB")
_MEMORY_WORDS = ("failed to allocate", "unable to allocate", "out of memory", "cudamalloc failed",
                 "cannot allocate", "not enough memory", "alloc_buffer", "failed to create buffer")
_CORRUPT_WORDS = ("not within the file bounds", "wrong number of tensors", "failed to read",
                  "tensor data", "invalid magic", "truncated", "corrupted", "is extremely large",
                  "key not found", "invalid")
_INVALID_WORDS = ("requires flash_attn", "does not divide", "does not support different k",
                  "n_ctx_seq", "invalid value for")


@dataclass(frozen=True)
class LoadFailure:
    kind: FailureKind
    reason: str


def check_file(path: str) -> LoadFailure | None:
    """The failures Python can see before llama.cpp opens the file."""
    file = Path(path)
    name = file.name
    if not file.exists():
        return LoadFailure(FailureKind.MISSING, f"The model file {path} does not exist.")
    if file.is_dir():
        return LoadFailure(FailureKind.NOT_GGUF, f"{path} is a folder, not a GGUF model file.")
    try:
        with file.open("rb") as stream:
            magic = stream.read(4)
    except OSError as error:
        return LoadFailure(FailureKind.MISSING, f"The model file {name} cannot be read: {error.strerror}.")
    if magic != GGUF_MAGIC:
        return LoadFailure(FailureKind.NOT_GGUF, f"{name} is not a GGUF model file.")
    return None


def explain(path: str, log_lines: Sequence[str], stage: str) -> LoadFailure:
    """Classify a failure from llama.cpp's warnings and errors; stage is "model" or "context"."""
    name = Path(path).name
    text = "\n".join(log_lines)
    lowered = text.lower()
    detail = _most_telling_line(log_lines)
    architecture = _ARCHITECTURE.search(text)
    if architecture:
        return LoadFailure(FailureKind.UNSUPPORTED,
                           f"This llama.cpp build does not support the model architecture "
                           f"'{architecture.group(1)}' of {name}.")
    if any(word in lowered for word in _MEMORY_WORDS):
        attempted = _ATTEMPTED.search(text)
        size = f"; it asked for {float(attempted.group(1)) / 1024:.1f} GiB at once" if attempted else ""
        return LoadFailure(FailureKind.MEMORY, f"Not enough memory to load {name} this way ({detail}{size}).")
    if any(word in lowered for word in _INVALID_WORDS):
        return LoadFailure(FailureKind.INVALID, f"llama.cpp refused these settings for {name} ({detail}).")
    if stage == "model" and any(word in lowered for word in _CORRUPT_WORDS):
        return LoadFailure(FailureKind.CORRUPT,
                           f"{name} is damaged or incomplete (a truncated download?): {detail}.")
    where = "the model" if stage == "model" else "the context for the model"
    return LoadFailure(FailureKind.UNKNOWN,
                       f"llama.cpp could not create {where} {name}" + (f" ({detail})." if detail else "."))


def _most_telling_line(lines: Sequence[str]) -> str:
    """The last logged problem that says more than 'failed to load model', without function names."""
    for line in reversed(lines):
        message = _strip_prefixes(line)
        if message.lower() not in _GENERIC_MESSAGES:
            return message
    return _strip_prefixes(lines[-1]) if lines else ""


_GENERIC_MESSAGES = {"failed to load model", "failed to create context", "failed to load model"}
_WRAPPERS = ("error loading model: ", "failed to initialize the context: ")


def _strip_prefixes(line: str) -> str:
    """'llama_model_load: error loading model: X' -> 'X'."""
    message = line.strip()
    while True:
        head, separator, tail = message.partition(": ")
        if separator and " " not in head:
            message = tail
            continue
        for wrapper in _WRAPPERS:
            if message.startswith(wrapper):
                message = message[len(wrapper):]
                break
        else:
            return message.rstrip(".")
