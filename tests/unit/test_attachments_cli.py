"""`llamadesk-cli chat MODEL --attach DOCUMENT`: the document goes with the prompt (whole, or the parts that match),
--json lists it with its sources, and a file that cannot be read ends the command in one sentence, nothing sent."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.unit.test_attachments import PLANTED, filler_page
from tests.unit.test_cli import cli

MODEL = os.environ.get("LLAMADESK_TEST_MODEL", "")
pytestmark = pytest.mark.skipif(not Path(MODEL).is_file(), reason="LLAMADESK_TEST_MODEL is not set")


def test_a_long_document_sends_the_parts_matching_the_prompt_and_lists_them(tmp_path):
    pages = [filler_page(n) for n in range(120)]
    pages[77] += "\n\n" + PLANTED
    (tmp_path / "logbook.txt").write_text("\n\n".join(pages), encoding="utf-8")
    result = cli("chat", MODEL, "--prompt", "Which combination opens the vault under the lighthouse?", "--attach",
                 str(tmp_path / "logbook.txt"), "--ctx", "2048", "--max-tokens", "8", "--seed", "1", "--json")
    assert result.returncode == 0, result.stderr
    (document,) = json.loads(result.stdout)["attachments"]
    assert document["name"] == "logbook.txt" and document["kind"] == "document"
    assert document["used"] == "retrieved" and document["tokens"] > 2048
    assert document["sources"] and all(source["position"] >= 0 for source in document["sources"])
    assert json.loads(result.stdout)["prompt_tokens"] <= 2048


@pytest.mark.parametrize("name, body, sentence", [
    ("program.txt", bytes(range(256)) * 10, "program.txt is not text"),
    ("report.pdf", b"plain words", "report.pdf is not a PDF"),
])
def test_a_file_that_cannot_be_read_ends_in_one_sentence_before_anything_is_sent(tmp_path, name, body, sentence):
    (tmp_path / name).write_bytes(body)
    result = cli("chat", MODEL, "--prompt", "Summarise it.", "--attach", str(tmp_path / name), "--json")
    assert result.returncode == 1 and result.stdout == ""
    assert sentence in result.stderr and "Traceback" not in result.stderr
