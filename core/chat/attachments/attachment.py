"""The values a chat message carries about its attachments, and the text the model reads for them.

An Attachment is a file attached to a user's message: a document (its text goes to the model, whole or the parts
retrieval chose) or an image (sent to a vision model's projector). A Source is one part of a document that went
to the model with a question: the answer lists its sources, and each opens to show its text.
"""
from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

KINDS = ("document", "image")
USES = ("whole", "retrieved", "image")   # a document sent whole, or only its retrieved parts; an image


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Attachment:
    name: str                 # the file's name as the user attached it
    kind: str                 # one of KINDS
    tokens: int               # the model's tokens for the whole document (an image: its projector's tokens, 0 unknown)
    size_bytes: int
    used: str = "whole"       # one of USES
    id: str = field(default_factory=_new_id)
    path: str = ""            # the copy kept with the chat ("" for one imported without its file)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"An attachment is a document or an image, not {self.kind!r}.")
        if self.used not in USES:
            raise ValueError(f"An attachment is used whole, retrieved or as an image, not {self.used!r}.")

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["path"] = Path(self.path).name if self.path else ""   # exports name the file, never this computer's folders
        return data

    @classmethod
    def from_dict(cls, values: Mapping) -> "Attachment":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown attachment field(s): {', '.join(map(str, unknown))}.")
        return cls(**{**dict(values), "path": ""})


@dataclass(frozen=True)
class Source:
    """A part of a document the model read for a question."""

    attachment_id: str
    name: str                 # the document's file name
    page: int | None          # 1-based page of a PDF; None for documents without pages
    position: int             # the chunk's place in the document (0-based); -1: the whole document
    text: str

    @property
    def label(self) -> str:
        if self.position < 0:
            return f"{self.name} (whole)"
        return f"{self.name} p. {self.page}" if self.page else f"{self.name} part {self.position + 1}"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "Source":
        if set(values) != {f.name for f in dataclasses.fields(cls)}:
            raise ValueError("A source must have exactly the fields attachment_id, name, page, position and text.")
        return cls(**dict(values))


def text_for_model(question: str, sources: Iterable[Source]) -> str:
    """The user's turn as the model reads it: each document part, marked with its file and page, then the question."""
    parts = [f'<document name="{source.name}"{_page(source)}>\n{source.text.strip()}\n</document>'
             for source in sources]
    if not parts:
        return question
    return "\n\n".join([*parts, question])


def _page(source: Source) -> str:
    return f' page="{source.page}"' if source.page else ""
