"""Syntax highlighting of a code block with Pygments, written as Qt character formats (no HTML).

Each look has its Pygments style (STYLES); plain tokens get the look's text colour, so code stays readable
on the code block's background whichever palette the application has."""
from __future__ import annotations

from functools import lru_cache

from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound
from PySide6.QtGui import QColor, QFont, QFontDatabase, QTextCharFormat, QTextCursor

STYLE = "friendly"                                      # the light look's style
STYLES = {"light": STYLE, "dark": "github-dark"}
PLAIN_TEXT = {"light": "#1d2329", "dark": "#e6edf3"}    # tokens the style leaves uncoloured
COMMON_LANGUAGES = ("python", "javascript", "typescript", "bash", "json", "c", "cpp", "rust", "go", "java",
                    "html", "css", "sql", "yaml", "toml", "markdown", "text")


def warm_up() -> None:
    """Background: load the style and the common lexers (tens of ms each the first time) before a chat
    with code is shown, so the UI thread never pays for it."""
    for language in COMMON_LANGUAGES:
        _lexer(language)
    for look in STYLES:
        _style(look)


def insert_code(cursor: QTextCursor, code: str, language: str, look: str = "light") -> None:
    """Write highlighted code at the cursor, in the colours of `look` ("light" | "dark")."""
    look = look if look in STYLES else "light"
    for token_type, value in _lexer(language.lower()).get_tokens(code):
        cursor.insertText(value, _format_for(token_type, look))


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


@lru_cache(maxsize=2)
def _style(look: str = "light"):
    return get_style_by_name(STYLES[look])


@lru_cache(maxsize=1024)
def _format_for(token_type, look: str = "light") -> QTextCharFormat:
    style = _style(look).style_for_token(token_type)
    char_format = QTextCharFormat()
    char_format.setFont(code_font())
    char_format.setForeground(QColor(f"#{style['color']}" if style["color"] else PLAIN_TEXT[look]))
    if style["bold"]:
        char_format.setFontWeight(QFont.Weight.Bold)
    if style["italic"]:
        char_format.setFontItalic(True)
    return char_format
