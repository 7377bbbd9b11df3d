"""Split a chat message's Markdown into prose and fenced code blocks.

Prose is rendered by Qt's own Markdown reader, one paragraph (text between blank lines) per block; code
blocks get syntax highlighting and a Copy link. A fence that is still open (an answer streaming in the
middle of a code block) runs to the end of the text, so half-written code already looks like code. While
an answer streams, every block but the last is final, so only the last one needs drawing again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$")


@dataclass(frozen=True)
class Block:
    kind: str          # "prose" | "code"
    text: str
    language: str = ""


def split_blocks(markdown: str) -> list[Block]:
    blocks: list[Block] = []
    prose: list[str] = []
    code: list[str] | None = None
    fence, language = "", ""
    for line in markdown.split("\n"):
        if code is None:
            opening = _FENCE.match(line)
            if opening:
                _flush_prose(prose, blocks)
                fence, language, code = opening.group(1), opening.group(2), []
            elif not line.strip():
                _flush_prose(prose, blocks)
            else:
                prose.append(line)
        elif line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            blocks.append(Block("code", "\n".join(code), language))
            code = None
        else:
            code.append(line)
    if code is not None:
        blocks.append(Block("code", "\n".join(code), language))
    _flush_prose(prose, blocks)
    return blocks


def _flush_prose(lines: list[str], blocks: list[Block]) -> None:
    text = "\n".join(lines).strip("\n")
    if text.strip():
        blocks.append(Block("prose", text))
    lines.clear()
