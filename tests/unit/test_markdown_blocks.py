"""Where a chat message's Markdown splits into blocks: CommonMark's own boundaries (markdown-it-py), so a
streaming answer can leave every block but the last one alone."""
from __future__ import annotations

from desktop.chat.markdown_blocks import GrowingBlocks, split_blocks

LIST_WITH_CODE = ("Do this:\n\n"
                  "1. Install it:\n\n"
                  "    ```bash\n"
                  "    pip install thing\n"
                  "\n"
                  "    thing --help\n"
                  "    ```\n"
                  "2. Run it.\n")


def test_a_fenced_block_with_a_blank_line_inside_a_numbered_item_stays_in_one_list_block():
    intro, listing = split_blocks(LIST_WITH_CODE)
    assert (intro.kind, intro.text) == ("prose", "Do this:")
    assert listing.kind == "prose" and listing.text.startswith("1. Install it:") and "2. Run it." in listing.text
    assert listing.codes == ("pip install thing\n\nthing --help",)


def test_a_top_level_fence_is_a_code_block_without_its_indentation():
    [code] = split_blocks("  ```python\n  def f():\n      return 1\n  ```\n")
    assert (code.kind, code.language, code.text) == ("code", "python", "def f():\n    return 1")
    assert code.codes == (code.text,)


def test_an_open_fence_runs_to_the_end_so_half_written_code_looks_like_code():
    prose, code = split_blocks("Here:\n\n```python\ndef f():\n")
    assert prose.text == "Here:" and (code.kind, code.language, code.text) == ("code", "python", "def f():")


def test_raw_html_is_a_block_of_its_own_and_keeps_its_text():
    think, answer = split_blocks("<think>\nThe user wants **x**.\n</think>\n\nThe answer.")
    assert think.text == "<think>\nThe user wants **x**.\n</think>" and answer.text == "The answer."


def test_a_later_link_definition_changes_the_block_that_uses_it():
    """The streaming view keeps blocks that are equal; a definition arriving later must redraw the link."""
    before = split_blocks("See [the docs].\n\nMore text.")
    after = split_blocks("See [the docs].\n\nMore text.\n\n[the docs]: https://example.org/docs")
    assert before[0].text == after[0].text
    assert before[0] != after[0]
    assert after[2].text == "[the docs]: https://example.org/docs" and after[2].tokens == (), \
        "a link definition is kept as typed (a user's message shows it) but has nothing to draw in an answer"


def test_unchanged_text_gives_equal_blocks():
    assert split_blocks(LIST_WITH_CODE) == split_blocks(LIST_WITH_CODE)
    assert split_blocks(LIST_WITH_CODE + "\nMore.")[:2] == split_blocks(LIST_WITH_CODE)


ANSWER = ("# Plan\n\nFirst [the docs], then `code` and <span style=\"x\">raw</span>.\n\n" + LIST_WITH_CODE +
          "\n> quoted\n> more\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<think>\nhidden?\n\nno\n</think>\n\n"
          "~~~\nopen fence\n\n~~~\n\n- a\n\n- b\n    indented\n\n[the docs]: https://example.org/docs 'Docs'\n"
          "Last words.\nSetext\n===\n\nPara\n    lazy\n\n    indented code\n\n<!-- a\n\nb -->\n10) ten\n11) eleven\n"
          "* * *\n***bold* both**\n")


def test_a_growing_answer_reads_the_same_as_reading_it_whole_at_every_step():
    growing = GrowingBlocks()
    for end in range(len(ANSWER) + 1):
        grown, whole = growing.split(ANSWER[:end]), split_blocks(ANSWER[:end])
        assert grown == whole, ANSWER[:end]
        assert [[t.type for t in b.tokens] for b in grown] == [[t.type for t in b.tokens] for b in whole]
        assert [b.codes for b in grown] == [b.codes for b in whole]


def test_a_growing_answer_that_starts_over_is_read_whole():
    growing = GrowingBlocks()
    growing.split(ANSWER)
    assert growing.split("Another answer.\n\n```\nx\n") == split_blocks("Another answer.\n\n```\nx\n")


def test_a_bare_web_address_is_a_link_and_other_text_is_not():
    (block,) = split_blocks("See https://example.org/docs for more, or www.example.com; not file:///etc/passwd.")
    inline = next(token for token in block.tokens if token.type == "inline")
    links = [child.attrGet("href") for child in inline.children if child.type == "link_open"]
    assert links == ["https://example.org/docs", "http://www.example.com"]
