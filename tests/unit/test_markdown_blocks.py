"""Where a chat message's Markdown splits into blocks: CommonMark's own boundaries (markdown-it-py), so a
streaming answer can leave every block but the last one alone."""
from __future__ import annotations

from desktop.chat.markdown_blocks import split_blocks

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
    assert len(after) == 2, "a link definition shows nothing of its own"


def test_unchanged_text_gives_equal_blocks():
    assert split_blocks(LIST_WITH_CODE) == split_blocks(LIST_WITH_CODE)
    assert split_blocks(LIST_WITH_CODE + "\nMore.")[:2] == split_blocks(LIST_WITH_CODE)
