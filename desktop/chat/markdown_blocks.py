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

# linkify: a bare web address in an answer is a link, as it was under Qt's GitHub-flavoured reader.
_PARSER = MarkdownIt("commonmark", {"html": True, "linkify": True}).enable(["table", "strikethrough", "linkify"])


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


@dataclass(frozen=True)
class _Reading:
    """One text as read: its blocks, the source line each starts on, and its link definitions (markdown-it's
    env["references"]: label -> href, title and the lines it stands on)."""

    text: str
    blocks: list[Block]
    first_lines: list[int]
    definitions: dict


def split_blocks(markdown: str) -> list[Block]:
    return _read(_normalised(markdown)).blocks


class GrowingBlocks:
    """split_blocks for an answer that grows while it streams. It reads again only from the first line of the
    last block (CommonMark never reopens a closed block), so a tick costs the last block, not the answer;
    a text that does not extend the previous one, or a link definition that appeared or changed, is read
    whole."""

    def __init__(self) -> None:
        self._last: _Reading | None = None

    def split(self, markdown: str) -> list[Block]:
        markdown = _normalised(markdown)
        last = self._last
        grown = _read_after(last, markdown) if last and markdown.startswith(last.text) else None
        self._last = grown or _read(markdown)
        return self._last.blocks


def _normalised(markdown: str) -> str:
    return markdown.replace("\r\n", "\n").replace("\r", "\n")


def _read(markdown: str) -> _Reading:
    env: dict = {}
    tokens = _PARSER.parse(markdown, env)
    definitions = env.get("references", {})
    blocks, first_lines = _blocks(tokens, markdown.split("\n"), 0, _fingerprint(definitions))
    return _Reading(markdown, blocks, first_lines, definitions)


def _read_after(last: _Reading, markdown: str) -> _Reading | None:
    """Read `markdown`, the text of `last` and more, again from the first block that could still change;
    None if that is the first block, or if the link definitions differ from `last`'s (the blocks before
    could then read differently)."""
    again = len(last.blocks) - 1
    if again >= 0 and last.first_lines[again] == last.text.count("\n"):
        again -= 1     # the last block starts on an unfinished line: it may yet belong to the block before
    if again < 1:
        return None
    first = last.first_lines[again]
    env = {"references": {label: entry for label, entry in last.definitions.items() if entry["map"][1] <= first}}
    lines = markdown.split("\n")
    tokens = _PARSER.parse("\n".join(lines[first:]), env)
    fingerprint = _fingerprint(env["references"])
    if fingerprint != _fingerprint(last.definitions):
        return None
    blocks, first_lines = _blocks(tokens, lines, first, fingerprint)
    return _Reading(markdown, last.blocks[:again] + blocks, last.first_lines[:again] + first_lines, last.definitions)


def _fingerprint(definitions: dict) -> tuple:
    return tuple(sorted((label, entry["href"], entry["title"]) for label, entry in definitions.items()))


def _blocks(tokens: list[Token], lines: list[str], offset: int, references: tuple) -> tuple[list[Block], list[int]]:
    """The top-level blocks of `tokens` (read from lines[offset:]) and the line each starts on. Source lines
    no block covers (link definitions) become a block without tokens: an answer shows nothing for it, a
    user's message shows it as typed."""
    blocks: list[Block] = []
    first_lines: list[int] = []
    covered = offset
    start = 0
    while start < len(tokens):
        end = _block_end(tokens, start)
        first, last = (line + offset for line in tokens[start].map)
        _add_uncovered(lines[covered:first], covered, blocks, first_lines, references)
        blocks.append(_block(tokens[start:end], lines[first:last], references))
        first_lines.append(first)
        covered, start = max(covered, last), end
    _add_uncovered(lines[covered:], covered, blocks, first_lines, references)
    return blocks, first_lines


def _add_uncovered(lines: list[str], first: int, blocks: list[Block], first_lines: list[int],
                   references: tuple) -> None:
    text = "\n".join(lines).strip("\n")
    if text.strip():
        blocks.append(Block("prose", text, references=references))
        first_lines.append(first)


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
    source = "\n".join(lines).strip("\n")
    # Only a block with a "]" can use a link definition (reference links and images end in one).
    return Block("prose", source, references=references if "]" in source else (), tokens=tuple(tokens))
