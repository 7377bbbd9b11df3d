"""Split a chat message's Markdown into its top-level CommonMark blocks (markdown-it-py's reading of it).

A block is a paragraph, a heading, a whole list (a fenced code block inside an item stays in its item), a
quote, a table, a raw-HTML block or a top-level code block; each keeps its markdown-it tokens, which the
message writer draws. A fence that is still open (an answer streaming in the middle of a code block) runs to
the end of the text, so half-written code already looks like code. While an answer streams, every block but
the last is final (CommonMark never reopens a closed block), so only the last one needs drawing again; the
one exception is a link definition arriving later, which is why a block that could use one carries the
message's definitions and compares unequal once they change.

Raw HTML is recognised (so that it ends up in html_block / html_inline tokens) only to be shown as text.
This module does not import Qt.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


@dataclass(frozen=True)
class Block:
    kind: str                         # "prose" | "code" (a top-level code block)
    text: str                         # the block's Markdown source; a code block's code
    language: str = ""
    references: tuple = ()            # the message's link definitions, for a block that could use one
    tokens: tuple[Token, ...] = field(default=(), compare=False, repr=False)

    @property
    def codes(self) -> tuple[str, ...]:
        """The code of every code block in this block (nested ones too), in order: what Copy copies."""
        return tuple(code_text(token) for token in self.tokens if token.type in ("fence", "code_block"))


def split_blocks(markdown: str) -> list[Block]:
    markdown = markdown.replace("\r\n", "\n").replace("\r", "\n")
    env: dict = {}
    tokens = _PARSER.parse(markdown, env)
    references = tuple(sorted((label, entry["href"], entry["title"])
                              for label, entry in env.get("references", {}).items()))
    lines = markdown.split("\n")
    blocks: list[Block] = []
    start = 0
    while start < len(tokens):
        end = _block_end(tokens, start)
        blocks.append(_block(tokens[start:end], lines, references))
        start = end
    return blocks


def code_text(token: Token) -> str:
    """A fence's or indented code block's code, without the newline that ends its last line."""
    return token.content[:-1] if token.content.endswith("\n") else token.content


def language_of(token: Token) -> str:
    return token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""


def _block_end(tokens: list[Token], start: int) -> int:
    """The index after the top-level block that starts at `start` (its closing token included)."""
    depth, index = 0, start
    while True:
        depth += tokens[index].nesting
        index += 1
        if depth == 0:
            return index


def _block(tokens: list[Token], lines: list[str], references: tuple) -> Block:
    first = tokens[0]
    if first.type in ("fence", "code_block"):
        return Block("code", code_text(first), language_of(first) if first.type == "fence" else "",
                     tokens=tuple(tokens))
    source = "\n".join(lines[first.map[0]:first.map[1]]).strip("\n") if first.map else first.content
    # Only a block with a "]" can use a link definition (reference links and images end in one).
    return Block("prose", source, references=references if "]" in source else (), tokens=tuple(tokens))
