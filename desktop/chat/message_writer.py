"""Writes one message into the chat document: a frame with the speaker, the Markdown body (prose through
Qt's Markdown reader, code blocks highlighted with a Copy link) and a footer of statistics and actions.

Actions are links with `act:` addresses (act:copy/<id>, act:edit/<id>, act:regenerate/<id>,
act:previous/<id>, act:next/<id>, act:code/<id>/<n>) that the chat view turns into signals.

Colours come from the look ("light" | "dark", desktop/theme.py): LOOKS holds each look's palette, and the
chat view makes a new writer (and draws again) when the look changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtGui import (QColor, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor, QTextFrameFormat,
                           QTextLength, QTextTableFormat)

from desktop.chat.code_highlight import insert_code
from desktop.chat.markdown_blocks import Block, split_blocks
from desktop.chat.message_views import MessageView

ACCENT = "#2a62c2"  # 4.5:1 or more on every light bubble
MUTED = "#5b6670"
SPEAKERS = {"user": ("You", ACCENT), "assistant": ("Assistant", "#1f7a45"), "system": ("System", "#9a5518")}
BUBBLES = {"user": "#eaf1fc", "assistant": "#ffffff", "system": "#fff7ec"}
CODE_BACKGROUND = "#f6f8fa"
CODE_BORDER = "#d9dee4"


@dataclass(frozen=True)
class Colours:
    """One look's colours for the chat document."""

    text: str
    muted: str
    accent: str
    speakers: dict[str, str] = field(hash=False)
    bubbles: dict[str, str] = field(hash=False)
    bubble_border: str
    code_background: str
    code_border: str


LOOKS = {
    "light": Colours(text="#1d2329", muted=MUTED, accent=ACCENT,
                     speakers={role: colour for role, (_, colour) in SPEAKERS.items()},
                     bubbles=BUBBLES, bubble_border="#e3e7ec",
                     code_background=CODE_BACKGROUND, code_border=CODE_BORDER),
    "dark": Colours(text="#e6e9ed", muted="#9aa4ae", accent="#7aa7f0",
                    speakers={"user": "#8db4f5", "assistant": "#6fcf97", "system": "#e8a865"},
                    bubbles={"user": "#1f3350", "assistant": "#252a30", "system": "#3a2f20"},
                    bubble_border="#3a414a", code_background="#0d1117", code_border="#3a414a"),
}


def colours_for(look: str) -> Colours:
    return LOOKS.get(look, LOOKS["light"])


class MessageWriter:
    """Formats are built once per look; `write` is called for every message shown or re-rendered."""

    def __init__(self, base_font: QFont, look: str = "light") -> None:
        self.look = look if look in LOOKS else "light"
        self.colours = colours = colours_for(self.look)
        self._body = _char_format(colours.text)
        self._muted = _char_format(colours.muted, size=base_font.pointSizeF() - 1)
        self._link = _char_format(colours.accent, size=base_font.pointSizeF() - 1)
        self._headings = {role: _char_format(colour, bold=True) for role, colour in colours.speakers.items()}

    def frame_format(self, role: str) -> QTextFrameFormat:
        frame = QTextFrameFormat()
        frame.setBackground(QColor(self.colours.bubbles.get(role, self.colours.bubbles["assistant"])))
        frame.setForeground(QColor(self.colours.text))
        frame.setPadding(10)
        frame.setBorder(1 if role == "assistant" else 0)
        frame.setBorderBrush(QColor(self.colours.bubble_border))
        frame.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
        frame.setTopMargin(4)
        frame.setBottomMargin(4)
        frame.setLeftMargin(64 if role == "user" else 0)
        frame.setRightMargin(0 if role == "user" else 24)
        return frame

    def write(self, cursor: QTextCursor, view: MessageView) -> list[str]:
        """Write the message at the cursor (inside its frame); returns the code of its code blocks."""
        self.write_heading(cursor, view)
        codes = self.write_blocks(cursor, view, split_blocks(view.text))
        self.write_footer(cursor, view)
        return codes

    def write_heading(self, cursor: QTextCursor, view: MessageView) -> None:
        name, _ = SPEAKERS[view.role]
        cursor.insertText(name, self._headings[view.role])

    def write_blocks(self, cursor: QTextCursor, view: MessageView, blocks: list[Block],
                     first_code: int = 0) -> list[str]:
        """Write Markdown blocks; code blocks are numbered from `first_code` for their Copy links."""
        codes: list[str] = []
        for block in blocks:
            if block.kind == "code":
                self._write_code(cursor, block.text, block.language,
                                 f"act:code/{view.id}/{first_code + len(codes)}")
                codes.append(block.text)
            else:
                _start_block(cursor, QTextBlockFormat(), self._body)
                if view.role == "assistant":
                    start = cursor.position()
                    cursor.insertMarkdown(block.text)
                    _colour_plain_text(cursor, start, self._body)
                else:
                    cursor.insertText(block.text, self._body)
        return codes

    def write_footer(self, cursor: QTextCursor, view: MessageView) -> None:
        footer = QTextBlockFormat()
        footer.setTopMargin(4)
        _start_block(cursor, footer, self._muted)
        if view.streaming:
            cursor.insertText("Writing…", self._muted)
            return
        if view.footnote:
            cursor.insertText(view.footnote + "    ", self._muted)
        for label, action in _actions(view):
            cursor.insertText(label, _link_format(self._link, f"act:{action}/{view.id}") if action else self._muted)
            cursor.insertText("  ", self._muted)

    def _write_code(self, cursor: QTextCursor, code: str, language: str, copy_href: str) -> None:
        table = cursor.insertTable(2, 1, _code_table_format(self.colours))
        header = table.cellAt(0, 0).firstCursorPosition()
        header.insertText((language or "code") + "   ", self._muted)
        header.insertText("Copy code", _link_format(self._link, copy_href))
        body = table.cellAt(1, 0).firstCursorPosition()
        insert_code(body, code, language, self.look)
        cursor.setPosition(table.lastPosition() + 1)


def _start_block(cursor: QTextCursor, block_format: QTextBlockFormat, char_format: QTextCharFormat) -> None:
    """A new paragraph, reusing the empty one Qt leaves after a code block's table."""
    if cursor.block().length() == 1 and cursor.currentTable() is None and _follows_table(cursor):
        cursor.setBlockFormat(block_format)
        cursor.setCharFormat(char_format)
    else:
        cursor.insertBlock(block_format, char_format)


def _follows_table(cursor: QTextCursor) -> bool:
    probe = QTextCursor(cursor)
    probe.movePosition(QTextCursor.MoveOperation.PreviousCharacter)
    return probe.currentTable() is not None


def _actions(view: MessageView) -> list[tuple[str, str]]:
    actions = [("Copy", "copy")]
    if view.role == "user":
        actions.append(("Edit", "edit"))
    if view.role == "assistant":
        actions.append(("Regenerate", "regenerate"))
    if view.has_branches:
        position, count = view.branch
        actions += [("‹", "previous" if position > 1 else ""), (f"{position}/{count}", ""),
                    ("›", "next" if position < count else "")]
    return actions


def _char_format(colour: str, *, size: float = 0, bold: bool = False) -> QTextCharFormat:
    char_format = QTextCharFormat()
    char_format.setForeground(QColor(colour))
    if size > 0:
        char_format.setFontPointSize(max(size, 7.0))
    if bold:
        char_format.setFontWeight(QFont.Weight.DemiBold)
    return char_format


def _link_format(base: QTextCharFormat, href: str) -> QTextCharFormat:
    link = QTextCharFormat(base)
    link.setAnchor(True)
    link.setAnchorHref(href)
    return link


def _colour_plain_text(cursor: QTextCursor, start: int, body: QTextCharFormat) -> None:
    """Qt's Markdown reader leaves prose without a colour (it would take the palette's, whatever the
    bubble): give uncoloured text the look's text colour, keeping links and other coloured runs."""
    end = cursor.position()
    document = cursor.document()
    runs: list[tuple[int, int]] = []
    block = document.findBlock(start)
    while block.isValid() and block.position() < end:
        iterator = block.begin()
        while not iterator.atEnd():
            fragment = iterator.fragment()
            char_format = fragment.charFormat()
            if not char_format.hasProperty(QTextCharFormat.Property.ForegroundBrush) and not char_format.isAnchor():
                lo, hi = max(fragment.position(), start), min(fragment.position() + fragment.length(), end)
                if lo < hi:
                    runs.append((lo, hi))
            iterator += 1
        block = block.next()
    for lo, hi in runs:
        run = QTextCursor(document)
        run.setPosition(lo)
        run.setPosition(hi, QTextCursor.MoveMode.KeepAnchor)
        run.mergeCharFormat(body)
    cursor.setPosition(end)


def _code_table_format(colours: Colours) -> QTextTableFormat:
    table = QTextTableFormat()
    table.setBackground(QColor(colours.code_background))
    table.setBorder(1)
    table.setBorderBrush(QColor(colours.code_border))
    table.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
    table.setBorderCollapse(True)
    table.setCellPadding(6)
    table.setCellSpacing(0)
    table.setTopMargin(6)
    table.setBottomMargin(6)
    table.setWidth(QTextLength(QTextLength.Type.PercentageLength, 100))
    return table
