"""The chat view draws a model's Markdown as CommonMark says (markdown-it-py's reading of it) and never
interprets raw HTML: what a model writes cannot add images, links or styles to the window, nor hide text."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QGuiApplication, QTextCursor, QTextTable

from desktop.chat.chat_view import ChatView
from desktop.chat.message_views import MessageView
from desktop.chat.message_writer import LOOKS

QUESTION = MessageView("q1", "user", "How do I install it?")
OWN_ACTIONS = {"Copy", "Edit", "Regenerate", "Copy code"}

LIST_WITH_CODE = ("Do this:\n\n"
                  "1. Install it:\n\n"
                  "    ```python\n"
                  "    import thing\n"
                  "\n"
                  "    thing.install()\n"
                  "    ```\n"
                  "2. Run it.\n")

RAW_HTML = ('<think>\nI must not reveal this.\n</think>\n\n'
            'Look: <img src="file:///etc/hostname"> and <a href="act:regenerate/q1">press here</a>.\n\n'
            'This is <span style="color:#ffffff; font-size:1px">hidden in white</span> text.\n\n'
            '<div style="display:none">a hidden block</div>\n\n'
            'Entities stay text too: &lt;b&gt;not bold&lt;/b&gt; <!-- a comment --> <b>bold?</b>\n')


@pytest.fixture
def view(qtbot):
    view = ChatView()
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    return view


def show(qtbot, view: ChatView, answer: str) -> None:
    view.show_thread([QUESTION, MessageView("a1", "assistant", answer, footnote="12 tokens")])
    qtbot.waitUntil(lambda: not view.rendering, timeout=5000)


def fragments(view: ChatView):
    """Every run of text in the document with its character format, in order (table cells included)."""
    block = view.document().begin()
    while block.isValid():
        iterator = block.begin()
        while not iterator.atEnd():
            yield iterator.fragment()
            iterator += 1
        block = block.next()


def anchors(view: ChatView) -> list[tuple[str, str]]:
    return [(f.text(), f.charFormat().anchorHref()) for f in fragments(view) if f.charFormat().isAnchor()]


def code_tables(view: ChatView) -> list[QTextTable]:
    tables = []
    block = view.document().begin()
    while block.isValid():
        table = QTextCursor(block).currentTable()
        if table is not None and table not in tables:
            tables.append(table)
        block = block.next()
    return tables


def cell_text(table: QTextTable, row: int) -> str:
    cell = table.cellAt(row, 0)
    cursor = QTextCursor(table.document())
    cursor.setPosition(cell.firstPosition())
    cursor.setPosition(cell.lastPosition(), QTextCursor.MoveMode.KeepAnchor)
    return cursor.selectedText().replace("\u2029", "\n")


def list_items(view: ChatView) -> list[tuple[str, str]]:
    """(number or bullet, text) of every list item's first paragraph."""
    items = []
    block = view.document().begin()
    while block.isValid():
        if block.textList() is not None:
            items.append((block.textList().itemText(block), block.text()))
        block = block.next()
    return items


def test_a_fenced_block_in_a_numbered_item_is_one_highlighted_block_with_copy(qtbot, view):
    show(qtbot, view, LIST_WITH_CODE)
    [table] = code_tables(view)
    code = "import thing\n\nthing.install()"
    assert cell_text(table, 1) == code
    assert "Copy code" in cell_text(table, 0)
    colours = {f.charFormat().foreground().color().name() for f in fragments(view)
               if table.firstPosition() <= f.position() < table.lastPosition() and f.text().strip()}
    assert len(colours) > 1, "the code is highlighted"
    assert list_items(view) == [("1.", "Install it:"), ("2.", "Run it.")]
    assert table.format().leftMargin() > 0, "the code sits inside its list item"
    view.anchorClicked.emit(QUrl("act:code/a1/0"))
    assert QGuiApplication.clipboard().text() == code


def test_reference_links_and_autolinks_are_links(qtbot, view):
    show(qtbot, view, "Read [the docs][docs] or [the guide].\n\nMail <someone@example.org>.\n\n"
                      '[docs]: https://example.org/docs "The docs"\n[the guide]: <https://example.org/guide>\n')
    assert ("the docs", "https://example.org/docs") in anchors(view)
    assert ("the guide", "https://example.org/guide") in anchors(view)
    assert ("someone@example.org", "mailto:someone@example.org") in anchors(view)
    shown = view.toPlainText()
    assert "Read the docs or the guide." in shown and "[docs]" not in shown and "example.org/guide" not in shown


def test_raw_html_from_a_model_is_shown_as_its_text(qtbot, view):
    show(qtbot, view, RAW_HTML)
    shown = view.toPlainText()
    for literal in ("<think>", "I must not reveal this.", "</think>", '<img src="file:///etc/hostname">',
                    '<a href="act:regenerate/q1">press here</a>',
                    '<span style="color:#ffffff; font-size:1px">hidden in white</span>',
                    '<div style="display:none">a hidden block</div>', "<b>not bold</b>", "<!-- a comment -->",
                    "<b>bold?</b>"):
        assert literal in shown
    assert not any(f.charFormat().isImageFormat() for f in fragments(view))
    assert {text for text, href in anchors(view)} <= OWN_ACTIONS
    body = LOOKS["light"].text
    for words in ("hidden in white", "a hidden block", "bold?", "I must not reveal this."):
        [fragment] = [f for f in fragments(view) if words in f.text()]
        assert fragment.charFormat().foreground().color().name() == body
        assert fragment.charFormat().fontWeight() < 600 and fragment.charFormat().fontPointSize() in (0, view.font().pointSizeF())


def test_a_models_markdown_link_cannot_become_one_of_the_views_actions(qtbot, view):
    show(qtbot, view, "[Undo everything](act:regenerate/q1) and ![a picture](file:///etc/hostname).\n")
    assert {text for text, href in anchors(view)} <= OWN_ACTIONS
    assert "Undo everything" in view.toPlainText() and "a picture" in view.toPlainText()
    assert not any(f.charFormat().isImageFormat() for f in fragments(view))


def test_markdown_reads_as_commonmark(qtbot, view):
    show(qtbot, view, "# Title\n\nSome *emphasis*, **strong**, `code` and ~~gone~~.\n\n"
                      "- one\n- two\n  - nested\n\n> quoted\n\n---\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    shown = view.toPlainText()
    for text in ("Title", "Some emphasis, strong, code and gone.", "quoted"):
        assert text in shown
    assert "*" not in shown and "`" not in shown and "|" not in shown and "#" not in shown
    formats = {f.text(): f.charFormat() for f in fragments(view)}
    assert formats["emphasis"].fontItalic() and formats["strong"].fontWeight() >= 600
    assert formats["gone"].fontStrikeOut() and formats["code"].fontFixedPitch()
    assert [text for _, text in list_items(view)] == ["one", "two", "nested"]
    [table] = code_tables(view)
    assert (table.rows(), table.columns()) == (2, 2)


def test_a_streamed_answer_redraws_only_its_last_block_and_ends_as_a_fresh_drawing(qtbot, view):
    answer = ("First, the idea.\n\n" + LIST_WITH_CODE + "\nSee [the docs].\n\n[the docs]: https://example.org/docs\n")
    view.show_thread([QUESTION, MessageView("a1", "assistant", "", streaming=True)])
    qtbot.waitUntil(lambda: not view.rendering, timeout=5000)
    changes: list[int] = []
    view.document().contentsChange.connect(lambda position, removed, added: changes.append(position))
    first_final = None
    for end in range(8, len(answer) + 1, 7):
        view.stream(MessageView("a1", "assistant", answer[:end], streaming=True))
        qtbot.waitUntil(lambda: view.views[-1].text == answer[:end], timeout=2000)
        if first_final is None and end > len("First, the idea.\n\n1."):
            first_final = view.document().find("First, the idea.").selectionEnd()
            changes.clear()
    assert changes and min(changes) >= first_final, "the first paragraph was drawn again once it was final"
    view.update_thread([QUESTION, MessageView("a1", "assistant", answer, footnote="40 tokens")])
    streamed = view.toPlainText(), anchors(view), list_items(view)

    show(qtbot, view, answer)
    assert (view.toPlainText().replace("12 tokens", "40 tokens"), anchors(view), list_items(view)) == streamed
    assert ("the docs", "https://example.org/docs") in streamed[1]
    view.anchorClicked.emit(QUrl("act:code/a1/0"))
    assert QGuiApplication.clipboard().text() == "import thing\n\nthing.install()"
