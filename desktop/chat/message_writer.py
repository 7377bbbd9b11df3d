"""Writes one message into the chat document: a frame with the speaker, the model's thinking (a block that
opens and closes), the tools it called, the Markdown body and a footer of statistics and actions.

Thinking is written as plain text in a shaded box under a "Thinking…" / "Thought for 12 s" link
(act:thinking/<id>) that opens and closes it; closed, only the link shows. It is never drawn as Markdown or
mixed into the answer. A tool call is a small box: the tool's name, then its arguments as highlighted JSON.

An answer's Markdown is drawn from markdown-it-py's tokens (desktop/chat/markdown_blocks.py) straight into
Qt's text formats: Qt's own Markdown reader is never used, because it interprets raw HTML. Raw HTML, and any
link that is not http(s) or mailto, is written as the text the model wrote; images show their description
(a link when their address is one), never the picture. Code blocks, nested ones too, are highlighted and
get a Copy link. A user's message is shown as typed, its top-level code blocks highlighted.

Actions are links with `act:` addresses (act:copy/<id>, act:edit/<id>, act:regenerate/<id>,
act:previous/<id>, act:next/<id>, act:code/<id>/<n>, act:thinking/<id>, act:image/<id>/<n>) that the chat view
turns into signals. A question's images show as thumbnails (desktop/chat/thumbnails.py) that open the whole image.

Colours come from the look ("light" | "dark", desktop/theme.py): LOOKS holds each look's palette, and the
chat view makes a new writer (and draws again) when the look changes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from markdown_it.token import Token
from PySide6.QtCore import QUrl
from PySide6.QtGui import (QColor, QFont, QTextBlockFormat, QTextCharFormat, QTextCursor, QTextDocument, QTextFormat,
                           QTextFrameFormat, QTextImageFormat, QTextLength, QTextList, QTextListFormat,
                           QTextTableFormat)

from desktop.chat.code_highlight import code_font, insert_code
from desktop.chat.markdown_blocks import Block, code_text, language_of, split_blocks
from desktop.chat.message_views import MessageView
from desktop.chat.thumbnails import thumbnail

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
    inline_code_background: str
    thinking_background: str


LOOKS = {
    "light": Colours(text="#1d2329", muted=MUTED, accent=ACCENT,
                     speakers={role: colour for role, (_, colour) in SPEAKERS.items()},
                     bubbles=BUBBLES, bubble_border="#e3e7ec",
                     code_background=CODE_BACKGROUND, code_border=CODE_BORDER, inline_code_background="#eef1f4",
                     thinking_background="#f3f5f8"),
    "dark": Colours(text="#e6e9ed", muted="#9aa4ae", accent="#7aa7f0",
                    speakers={"user": "#8db4f5", "assistant": "#6fcf97", "system": "#e8a865"},
                    bubbles={"user": "#1f3350", "assistant": "#252a30", "system": "#3a2f20"},
                    bubble_border="#3a414a", code_background="#0d1117", code_border="#3a414a",
                    inline_code_background="#343b44", thinking_background="#1e2227"),
}


def colours_for(look: str) -> Colours:
    return LOOKS.get(look, LOOKS["light"])


class MessageWriter:
    """Formats are built once per look; `write` is called for every message shown or re-rendered."""

    def __init__(self, base_font: QFont, look: str = "light") -> None:
        self.look = look if look in LOOKS else "light"
        self.colours = colours = colours_for(self.look)
        self.base_size = base_font.pointSizeF()
        self.body = _char_format(colours.text)
        self.quoted = _char_format(colours.muted)
        self._muted = _char_format(colours.muted, size=base_font.pointSizeF() - 1)
        self._link = _char_format(colours.accent, size=base_font.pointSizeF() - 1)
        self._headings = {role: _char_format(colour, bold=True) for role, colour in colours.speakers.items()}
        self.thinking = _char_format(colours.muted, size=base_font.pointSizeF() - 0.5)
        self._tool_name = _char_format(colours.text, bold=True)
        self._tool_name.setFontFamilies(code_font().families())

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

    def write(self, cursor: QTextCursor, view: MessageView, thinking_open: bool = False) -> list[str]:
        """Write the message at the cursor (inside its frame); returns the code of its code blocks."""
        self.write_heading(cursor, view)
        self.write_thinking(cursor, view, thinking_open)
        self.write_tool_calls(cursor, view)
        codes = self.write_blocks(cursor, view, split_blocks(view.text))
        self.write_attachments(cursor, view)
        self.write_footer(cursor, view)
        return codes

    def write_attachments(self, cursor: QTextCursor, view: MessageView) -> None:
        """A question's files, one line each: name, kind and tokens; an image as its thumbnail above its name, a
        link (act:image/<id>/<n>) that opens the whole picture."""
        for number, attachment in enumerate(view.attachments):
            line = QTextBlockFormat()
            line.setTopMargin(2)
            _start_block(cursor, line, self._muted)
            if attachment.kind != "image":
                cursor.insertText(f"Attached: {attachment.name} · {attachment.tokens:,} tokens", self._muted)
                continue
            href = f"act:image/{view.id}/{number}"
            if self.write_thumbnail(cursor, attachment.path, href):
                cursor.insertText(LINE_BREAK, self._muted)
            tokens = f" · {attachment.tokens:,} tokens" if attachment.tokens else ""
            cursor.insertText(f"Attached image: {attachment.name}{tokens}", self._muted)

    def write_thumbnail(self, cursor: QTextCursor, path: str, href: str) -> bool:
        """The image's thumbnail as a link; False (nothing written) when the file is gone or unreadable."""
        image = thumbnail(path) if path else None
        if image is None:
            return False
        name = f"thumbnail:{path}"
        cursor.document().addResource(QTextDocument.ResourceType.ImageResource, QUrl(name), image)
        picture = QTextImageFormat()
        picture.setName(name)
        picture.setWidth(image.width())
        picture.setHeight(image.height())
        picture.setAnchor(True)
        picture.setAnchorHref(href)
        picture.setToolTip("Open the image")
        cursor.insertImage(picture)
        return True

    def write_thinking(self, cursor: QTextCursor, view: MessageView, opened: bool) -> int | None:
        """The thinking block: its link, and when `opened` the thinking text in a shaded box. Returns the
        document position where that text ends (more streamed thinking goes there), None when not shown."""
        if not view.reasoning:
            return None
        toggle = QTextBlockFormat()
        toggle.setTopMargin(4)
        _start_block(cursor, toggle, self._muted)
        link = _link_format(self._link, f"act:thinking/{view.id}")
        link.setToolTip("Hide the model's thinking" if opened else "Show the model's thinking")
        cursor.insertText(("▾ " if opened else "▸ ") + view.thinking_note, link)
        if not opened:
            return None
        table = cursor.insertTable(1, 1, _thinking_table_format(self.colours))
        inside = table.cellAt(0, 0).firstCursorPosition()
        inside.insertText(view.reasoning, self.thinking)
        end = inside.position()
        cursor.setPosition(table.lastPosition() + 1)
        return end

    def write_tool_calls(self, cursor: QTextCursor, view: MessageView) -> None:
        """Each call as a small box: "Tool call" and the name, then the arguments as JSON."""
        for call in view.tool_calls:
            table = cursor.insertTable(2, 1, _code_table_format(self.colours))
            header = table.cellAt(0, 0).firstCursorPosition()
            header.insertText("Tool call  ", self._muted)
            header.insertText(call.name, self._tool_name)
            insert_code(table.cellAt(1, 0).firstCursorPosition(), _readable_arguments(call.arguments), "json",
                        self.look)
            cursor.setPosition(table.lastPosition() + 1)

    def write_heading(self, cursor: QTextCursor, view: MessageView) -> None:
        name, _ = SPEAKERS[view.role]
        cursor.insertText(name, self._headings[view.role])

    def write_blocks(self, cursor: QTextCursor, view: MessageView, blocks: list[Block],
                     first_code: int = 0) -> list[str]:
        """Write Markdown blocks; code blocks are numbered from `first_code` for their Copy links."""
        codes: list[str] = []
        for block in blocks:
            if block.kind == "code":
                self.write_code(cursor, block.text, block.language, self.code_href(view.id, first_code + len(codes)))
                codes.append(block.text)
            elif view.role == "assistant":
                codes += _MarkdownDrawing(self, cursor, view.id, first_code + len(codes)).draw(block.tokens)
            else:
                _start_block(cursor, QTextBlockFormat(), self.body)
                cursor.insertText(block.text, self.body)
        return codes

    @staticmethod
    def code_href(message_id: str, number: int) -> str:
        return f"act:code/{message_id}/{number}"

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
        self.write_sources(cursor, view)

    def write_sources(self, cursor: QTextCursor, view: MessageView) -> None:
        """"Sources:" and a link per document part the answer was given (act:source/<id>/<n> opens it)."""
        if not view.sources:
            return
        line = QTextBlockFormat()
        line.setTopMargin(2)
        _start_block(cursor, line, self._muted)
        cursor.insertText("Sources: ", self._muted)
        for number, source in enumerate(view.sources):
            cursor.insertText(source.label, _link_format(self._link, f"act:source/{view.id}/{number}"))
            cursor.insertText("   ", self._muted)

    def write_code(self, cursor: QTextCursor, code: str, language: str, copy_href: str, indent: int = 0) -> None:
        """A code block (a table: the language and Copy, then the highlighted code), `indent` levels in."""
        table_format = _code_table_format(self.colours)
        table_format.setLeftMargin(indent * cursor.document().indentWidth())
        table = cursor.insertTable(2, 1, table_format)
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


LINK_SCHEMES = ("http:", "https:", "mailto:")   # a model's link to anything else is shown as text
HEADING_GROWTH = {1: 5.0, 2: 3.0, 3: 2.0, 4: 1.0}  # points over the body's size; h5, h6 are body-sized
LINE_BREAK = "\u2028"                             # a line break inside a paragraph
BLOCK_SPACING = 6.0                               # pixels above each block of an answer


@dataclass
class _OpenList:
    format: QTextListFormat
    tight: bool                       # no space between its items
    items: QTextList | None = None


class _MarkdownDrawing:
    """Draws one block's markdown-it tokens at the cursor: lists become Qt lists, quotes and list items
    indentation, inline tokens character formats; code blocks go through the writer (with Copy); raw HTML
    is written as its text."""

    def __init__(self, writer: MessageWriter, cursor: QTextCursor, message_id: str, first_code: int) -> None:
        self.writer, self.cursor, self.message_id, self.first_code = writer, cursor, message_id, first_code
        self.codes: list[str] = []
        self.lists: list[_OpenList] = []
        self.quotes = 0
        self.item_waiting = False    # a list item's numbered paragraph is drawn, still empty
        self.first = True            # no paragraph of this block drawn yet

    def draw(self, tokens: tuple[Token, ...]) -> list[str]:
        index = 0
        while index < len(tokens):
            index = self._token(tokens, index)
        return self.codes

    @property
    def indent(self) -> int:
        return len(self.lists) + self.quotes

    def _token(self, tokens: tuple[Token, ...], index: int) -> int:
        """Draw tokens[index] (a table: all of it); returns the index of the next token to draw."""
        token = tokens[index]
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            self.lists.append(_OpenList(_list_format(token, self.indent + 1), _is_tight(tokens, index)))
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
        elif kind == "list_item_open":
            self._list_item()
        elif kind == "blockquote_open":
            self.quotes += 1
        elif kind == "blockquote_close":
            self.quotes -= 1
        elif kind == "paragraph_open":
            self._paragraph(tight=token.hidden)
            self._inline(tokens[index + 1].children or [], self._text_format())
            return index + 2
        elif kind == "heading_open":
            self._paragraph(top_margin=8)
            self._inline(tokens[index + 1].children or [], self._heading_format(int(token.tag[1:])))
            return index + 2
        elif kind in ("fence", "code_block"):
            code = code_text(token)
            self.writer.write_code(self.cursor, code, language_of(token) if kind == "fence" else "",
                                   self.writer.code_href(self.message_id, self.first_code + len(self.codes)),
                                   self.indent)
            self.codes.append(code)
            self.item_waiting = False
        elif kind == "html_block":
            self._paragraph()
            self.cursor.insertText(token.content.rstrip("\n").replace("\n", LINE_BREAK), self._text_format())
        elif kind == "hr":
            self._paragraph()
            self.cursor.setBlockFormat(_ruler(self.cursor.blockFormat()))
        elif kind == "table_open":
            return self._table(tokens, index)
        return index + 1

    # --- blocks ---

    def _list_item(self) -> None:
        """A numbered (or bulleted) paragraph, left empty for the item's first paragraph to fill."""
        self.item_waiting = False     # an item that opens with a list keeps its own number on a line
        current = self.lists[-1]
        self._paragraph(tight=current.tight, indent=0)
        if current.items is None:
            current.items = self.cursor.createList(current.format)
        else:
            current.items.add(self.cursor.block())
        self.item_waiting = True

    def _paragraph(self, *, tight: bool = False, top_margin: float = 0, indent: int | None = None) -> None:
        """A new paragraph: space above it where a block starts and between a loose list's paragraphs."""
        if self.item_waiting:
            self.item_waiting = False
            return
        block_format = QTextBlockFormat()
        block_format.setIndent(self.indent if indent is None else indent)
        block_format.setTopMargin(max(top_margin, BLOCK_SPACING if self.first else 0 if tight else BLOCK_SPACING / 2))
        self.first = False
        _start_block(self.cursor, block_format, self._text_format())

    def _table(self, tokens: tuple[Token, ...], index: int) -> int:
        """A GitHub table: header cells bold; returns the index after table_close."""
        rows: list[list[tuple[Token, bool]]] = []
        while tokens[index].type != "table_close":
            token = tokens[index]
            if token.type == "tr_open":
                rows.append([])
            elif token.type in ("th_open", "td_open"):
                rows[-1].append((tokens[index + 1], token.type == "th_open"))
            index += 1
        columns = max(len(row) for row in rows)
        table = self.cursor.insertTable(len(rows), columns, _grid_format(self.writer.colours, self.indent))
        bold = QTextCharFormat(self._text_format())
        bold.setFontWeight(QFont.Weight.DemiBold)
        for row_number, row in enumerate(rows):
            for column, (inline, header) in enumerate(row):
                cell = table.cellAt(row_number, column).firstCursorPosition()
                self._inline(inline.children or [], bold if header else self._text_format(), cell)
        self.cursor.setPosition(table.lastPosition() + 1)
        self.item_waiting = False
        return index + 1

    # --- text ---

    def _inline(self, children: list[Token], base: QTextCharFormat, cursor: QTextCursor | None = None) -> None:
        cursor = cursor or self.cursor
        formats = [base]
        for child in children:
            kind = child.type
            if kind in ("text", "html_inline"):
                cursor.insertText(child.content, formats[-1])
            elif kind == "softbreak":
                cursor.insertText(" ", formats[-1])
            elif kind == "hardbreak":
                cursor.insertText(LINE_BREAK, formats[-1])
            elif kind == "code_inline":
                cursor.insertText(child.content, self._inline_code_format(formats[-1]))
            elif kind == "image":
                image = self._link_format(_italic(formats[-1]), child.attrGet("src"))
                cursor.insertText(child.content or "image", image)
            elif kind.endswith("_open"):
                formats.append(self._opened(child, formats[-1]))
            elif kind.endswith("_close") and len(formats) > 1:
                formats.pop()

    def _opened(self, token: Token, outer: QTextCharFormat) -> QTextCharFormat:
        opened = QTextCharFormat(outer)
        if token.type == "em_open":
            opened.setFontItalic(True)
        elif token.type == "strong_open":
            opened.setFontWeight(QFont.Weight.Bold)
        elif token.type == "s_open":
            opened.setFontStrikeOut(True)
        elif token.type == "link_open":
            opened = self._link_format(outer, token.attrGet("href"))
        return opened

    def _link_format(self, outer: QTextCharFormat, href) -> QTextCharFormat:
        if not isinstance(href, str) or not href.lower().startswith(LINK_SCHEMES):
            return outer
        link = QTextCharFormat(outer)
        link.setAnchor(True)
        link.setAnchorHref(href)
        link.setToolTip(href)
        link.setForeground(QColor(self.writer.colours.accent))
        link.setFontUnderline(True)
        return link

    def _text_format(self) -> QTextCharFormat:
        return self.writer.quoted if self.quotes else self.writer.body

    def _heading_format(self, level: int) -> QTextCharFormat:
        heading = QTextCharFormat(self._text_format())
        heading.setFontWeight(QFont.Weight.Bold)
        heading.setFontPointSize(self.writer.base_size + HEADING_GROWTH.get(level, 0.0))
        return heading

    def _inline_code_format(self, outer: QTextCharFormat) -> QTextCharFormat:
        code = QTextCharFormat(outer)
        code.setFontFamilies(code_font().families())
        code.setFontFixedPitch(True)
        code.setBackground(QColor(self.writer.colours.inline_code_background))
        return code


def _list_format(token: Token, indent: int) -> QTextListFormat:
    list_format = QTextListFormat()
    list_format.setIndent(indent)
    if token.type == "ordered_list_open":
        list_format.setStyle(QTextListFormat.Style.ListDecimal)
        list_format.setStart(int(token.attrGet("start") or 1))
    else:
        bullets = (QTextListFormat.Style.ListDisc, QTextListFormat.Style.ListCircle, QTextListFormat.Style.ListSquare)
        list_format.setStyle(bullets[(indent - 1) % len(bullets)])
    return list_format


def _is_tight(tokens: tuple[Token, ...], list_open: int) -> bool:
    """Whether the list opened at tokens[list_open] is tight (markdown-it hides its items' paragraphs)."""
    level = tokens[list_open].level + 2
    for token in tokens[list_open + 1:]:
        if token.type == "paragraph_open" and token.level == level:
            return token.hidden
        if token.level < tokens[list_open].level + 1:
            break
    return True


def _ruler(block_format: QTextBlockFormat) -> QTextBlockFormat:
    ruler = QTextBlockFormat(block_format)
    ruler.setProperty(QTextFormat.Property.BlockTrailingHorizontalRulerWidth,
                      QTextLength(QTextLength.Type.PercentageLength, 100))
    return ruler


def _italic(outer: QTextCharFormat) -> QTextCharFormat:
    italic = QTextCharFormat(outer)
    italic.setFontItalic(True)
    return italic


def _grid_format(colours: Colours, indent: int) -> QTextTableFormat:
    table = QTextTableFormat()
    table.setBorder(1)
    table.setBorderBrush(QColor(colours.code_border))
    table.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
    table.setBorderCollapse(True)
    table.setCellPadding(4)
    table.setCellSpacing(0)
    table.setTopMargin(4)
    table.setBottomMargin(4)
    table.setLeftMargin(indent * 40)
    return table


def _readable_arguments(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False, indent=2)
    except (ValueError, RecursionError):
        return arguments


def _thinking_table_format(colours: Colours) -> QTextTableFormat:
    table = QTextTableFormat()
    table.setBackground(QColor(colours.thinking_background))
    table.setBorder(1)
    table.setBorderBrush(QColor(colours.bubble_border))
    table.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
    table.setBorderCollapse(True)
    table.setCellPadding(8)
    table.setCellSpacing(0)
    table.setTopMargin(4)
    table.setBottomMargin(6)
    table.setWidth(QTextLength(QTextLength.Type.PercentageLength, 100))
    return table


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
