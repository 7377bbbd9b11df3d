"""Syntax highlighting of a code block with Pygments, written as Qt character formats (no HTML)."""
from __future__ import annotations

from functools import lru_cache

from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound
from PySide6.QtGui import QColor, QFont, QFontDatabase, QTextCharFormat, QTextCursor

STYLE = "friendly"
COMMON_LANGUAGES = ("python", "javascript", "typescript", "bash", "json", "c", "cpp", "rust", "go", "java",
                    "html", "css", "sql", "yaml", "toml", "markdown", "text")


def warm_up() -> None:
    """Background: load the style and the common lexers (tens of ms each the first time) before a chat
    with code is shown, so the UI thread never pays for it."""
    for language in COMMON_LANGUAGES:
        _lexer(language)
    _style()


def insert_code(cursor: QTextCursor, code: str, language: str) -> None:
    """Write highlighted code at the cursor."""
    for token_type, value in _lexer(language.lower()).get_tokens(code):
        cursor.insertText(value, _format_for(token_type))


def code_font() -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setPointSizeF(max(font.pointSizeF() - 0.5, 8.0))
    return font


@lru_cache(maxsize=64)
def _lexer(language: str):
    """The lexer for a fence's language name; plain text when unnamed or unknown (guessing is slow)."""
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False) if language else TextLexer()
    except ClassNotFound:
        return TextLexer()


@lru_cache(maxsize=1)
def _style():
    return get_style_by_name(STYLE)


@lru_cache(maxsize=512)
def _format_for(token_type) -> QTextCharFormat:
    style = _style().style_for_token(token_type)
    char_format = QTextCharFormat()
    char_format.setFont(code_font())
    if style["color"]:
        char_format.setForeground(QColor(f"#{style['color']}"))
    if style["bold"]:
        char_format.setFontWeight(QFont.Weight.Bold)
    if style["italic"]:
        char_format.setFontItalic(True)
    return char_format
