"""Attached documents: every format read from files the tests write, bad files refused with one sentence, a planted
fact found in a 300-page text and listed as the source, and the planner's sentence for a document longer than the
context."""
from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import docx
import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from core.chat.attachments.chunks import chunk_pages
from core.chat.attachments.extraction import MAX_DOCUMENT_BYTES, DocumentRefused, Page, extract
from core.chat.attachments.index import ChunkIndex
from core.chat.attachments.retrieval import choose_parts, estimate_tokens, prepare_document, question_with_documents

PLANTED = "The vault under the old lighthouse opens with the combination 7319-Quokka."


def pdf_with_pages(path: Path, texts: list[str], *, password: str | None = None) -> Path:
    """A real PDF whose pages draw `texts` with Helvetica (pypdf writes the file; each page a content stream)."""
    writer = PdfWriter()
    for text in texts:
        page = writer.add_blank_page(612, 792)
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
            {NameObject("/F1"): writer._add_object(font)})})
        lines = textwrap.wrap(text, 90) or [""]
        ops = ["BT", "/F1 10 Tf", "14 TL", "40 750 Td"]
        for line in lines:
            ops.append("(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    if password:
        writer.encrypt(password, algorithm="RC4-128")
    with path.open("wb") as file:
        writer.write(file)
    return path


def filler_page(number: int) -> str:
    return (f"Page {number} of the harbour logbook. The tide came in at the usual hour and the boats were counted. "
            f"Ropes were checked, nets were mended and the weather was noted as calm with a light breeze. ") * 3


# --- extraction ------------------------------------------------------------------------------------------

def test_a_pdf_is_read_page_by_page(tmp_path):
    path = pdf_with_pages(tmp_path / "report.pdf", ["Quarterly revenue grew by eleven percent.", "Costs fell."])
    document = extract(path)
    assert document.format == "pdf"
    assert [page.number for page in document.pages] == [1, 2]
    assert "eleven percent" in document.pages[0].text and "Costs fell" in document.pages[1].text


def test_a_word_document_is_read_with_its_tables(tmp_path):
    word = docx.Document()
    word.add_heading("Minutes", level=1)
    word.add_paragraph("The committee approved the new bicycle racks.")
    table = word.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Budget", "4,200 EUR"
    word.save(tmp_path / "minutes.docx")
    text = extract(tmp_path / "minutes.docx").text
    assert "approved the new bicycle racks" in text and "Budget | 4,200 EUR" in text


def test_html_gives_its_text_without_scripts_or_styles(tmp_path):
    (tmp_path / "page.html").write_text(
        "<html><head><title>T</title><style>p {color: red}</style></head><body><h1>Recipe</h1>"
        "<p>Bake for <b>25&nbsp;minutes</b>.</p><script>alert('x')</script></body></html>", encoding="utf-8")
    text = extract(tmp_path / "page.html").text
    assert text.split("\n") == ["Recipe", "Bake for 25 minutes."]
    assert "alert" not in text and "color" not in text


@pytest.mark.parametrize("name, body", [("notes.md", "# Notes\n\n- milk\n"), ("tool.py", "def f():\n    return 1\n"),
                                        ("plain.txt", "héllo wörld\n")])
def test_text_markdown_and_source_code_are_read_as_written(tmp_path, name, body):
    (tmp_path / name).write_text(body, encoding="utf-8")
    assert extract(tmp_path / name).text == body


def test_windows_1252_text_is_read_too(tmp_path):
    (tmp_path / "old.txt").write_bytes("café crème".encode("cp1252"))
    assert extract(tmp_path / "old.txt").text == "café crème"


# --- bad input ---------------------------------------------------------------------------------------------

def test_an_encrypted_pdf_is_refused_with_a_sentence(tmp_path):
    path = pdf_with_pages(tmp_path / "secret.pdf", ["Top secret."], password="hunter2")
    with pytest.raises(DocumentRefused, match="secret.pdf is protected by a password"):
        extract(path)


def test_a_scanned_pdf_without_text_is_refused(tmp_path):
    path = pdf_with_pages(tmp_path / "scan.pdf", ["", ""])
    with pytest.raises(DocumentRefused, match="no text to read: it looks like a scanned PDF"):
        extract(path)


def test_a_file_that_is_not_what_its_name_says_is_refused(tmp_path):
    (tmp_path / "fake.pdf").write_text("just some words", encoding="utf-8")
    (tmp_path / "fake.docx").write_text("not a zip", encoding="utf-8")
    with pytest.raises(DocumentRefused, match="fake.pdf is not a PDF"):
        extract(tmp_path / "fake.pdf")
    with pytest.raises(DocumentRefused, match="fake.docx is not a Word document"):
        extract(tmp_path / "fake.docx")


def test_a_binary_renamed_txt_is_refused(tmp_path):
    (tmp_path / "program.txt").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DocumentRefused, match="program.txt is not text: it holds binary data"):
        extract(tmp_path / "program.txt")


def test_a_200_mb_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.txt"
    with path.open("wb") as file:
        file.truncate(200 * 1024 * 1024)          # sparse: no 200 MB written
    assert path.stat().st_size > MAX_DOCUMENT_BYTES
    with pytest.raises(DocumentRefused, match=r"huge.txt is 200 MB; a document can be at most 64 MB"):
        extract(path)


def test_an_unknown_kind_of_file_is_refused(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DocumentRefused, match="not a document LlamaDesk can read"):
        extract(tmp_path / "data.bin")


# --- chunks and retrieval ----------------------------------------------------------------------------------

def test_chunks_keep_their_page_and_never_span_two_pages():
    chunks = chunk_pages([Page(1, "a. " * 1000), Page(2, "b. " * 10)])
    assert {chunk.page for chunk in chunks} == {1, 2}
    assert all(len(chunk.text) <= 1200 for chunk in chunks)
    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
    assert all(("a." in c.text) != ("b." in c.text) for c in chunks)


def test_retrieval_finds_the_planted_fact_in_a_300_page_text_and_lists_it_as_the_source(tmp_path):
    pages = [filler_page(n) for n in range(1, 301)]
    pages[217] += " " + PLANTED
    path = pdf_with_pages(tmp_path / "logbook.pdf", pages)
    index = ChunkIndex()
    document = prepare_document(path, estimate_tokens, index)
    assert document.attachment.tokens > 40_000
    use = choose_parts([document], "What combination opens the vault under the lighthouse?", 2000, index)
    assert use.used == "retrieved" and use.tokens <= 2000
    holding = [source for source in use.sources if "7319-Quokka" in source.text]
    assert holding and holding[0].page == 218 and holding[0].name == "logbook.pdf"
    assert holding[0].label == "logbook.pdf p. 218"
    assert "7319-Quokka" in question_with_documents("Which combination?", use)


def test_documents_that_fit_go_whole(tmp_path):
    (tmp_path / "short.md").write_text("The meeting is on Tuesday.", encoding="utf-8")
    index = ChunkIndex()
    document = prepare_document(tmp_path / "short.md", estimate_tokens, index)
    use = choose_parts([document], "When is the meeting?", 4000, index)
    assert use.used == "whole" and [s.label for s in use.sources] == ["short.md (whole)"]
    assert use.documents[0].used == "whole"


def test_a_question_with_no_matching_word_gets_the_documents_beginning(tmp_path):
    (tmp_path / "long.txt").write_text("\n\n".join(filler_page(n) for n in range(50)), encoding="utf-8")
    index = ChunkIndex()
    document = prepare_document(tmp_path / "long.txt", estimate_tokens, index)
    use = choose_parts([document], "zzz?", 600, index)
    assert use.used == "retrieved" and use.sources and use.sources[0].position == 0


def test_a_follow_up_question_finds_another_part_of_a_stored_long_document(tmp_path):
    from core.chat.attachments.retrieval import follow_up_sources
    from core.chat.store import ChatStore

    pages = [filler_page(n) for n in range(1, 301)]
    pages[41] += " " + PLANTED
    pages[262] += " The keeper's cat is called Marmalade and sleeps on the lamp room stairs."
    source_file = tmp_path / "logbook.txt"
    source_file.write_text("\n\n".join(pages), encoding="utf-8")
    index = ChunkIndex()
    document = prepare_document(source_file, estimate_tokens, index)
    first = choose_parts([document], "What combination opens the vault under the lighthouse?", 2000, index)
    assert first.used == "retrieved"

    with ChatStore(tmp_path / "chats.sqlite3") as store:
        chat = store.create_conversation()
        store.add_message(chat.id, "user", "What combination opens the vault?", attachments=first.documents,
                          chunks={document.attachment.id: document.chunks}, sources=first.sources)
        store.add_message(chat.id, "assistant", "7319-Quokka.")
        earlier = store.load_conversation(chat.id).messages

        found = follow_up_sources("What is the keeper's cat called?", earlier, store.stored_chunks(), 1500)
        assert any("Marmalade" in source.text for source in found)
        assert all(source.name == "logbook.txt" for source in found)
        already_sent = {(s.attachment_id, s.position) for s in first.sources}
        assert not already_sent & {(s.attachment_id, s.position) for s in found}
        assert sum(estimate_tokens(s.text) + 16 for s in found) <= 1500

        whole = replace(first.documents[0], used="whole")
        assert follow_up_sources("What is the keeper's cat called?",
                                 [replace(earlier[0], attachments=(whole,))], store.stored_chunks(), 1500) == ()


# --- follow-ups by meaning -------------------------------------------------------------------------------

class SenseEmbedder:
    """A stand-in embedding model whose vectors do carry meaning: each word adds to its sense's axis (synonyms share
    one), every other word to the last axis. So "tabby" finds "cat" though no word of the two texts is shared."""

    SENSES = {"cat": 0, "tabby": 0, "feline": 0, "called": 1, "named": 1, "name": 1, "vault": 2, "strongroom": 2}

    def __init__(self, file_name: str = "sense-embed.gguf", dimension: int = 8) -> None:
        self.model_path = Path("/models") / file_name
        self.dimension = dimension
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> tuple[float, ...]:
        import re

        vector = [0.0] * self.dimension
        for word in re.findall(r"\w+", text.lower()):
            vector[self.SENSES.get(word, self.dimension - 1)] += 1.0 if word in self.SENSES else 0.05
        length = sum(value * value for value in vector) ** 0.5
        return tuple(value / length for value in vector)


CAT = "The keeper's cat is called Marmalade and sleeps on the lamp room stairs."
BY_MEANING_ONLY = "How is the tabby named?"      # no word of it (but stop words) is in the logbook


def stored_logbook(store, tmp_path, embed):
    """A long logbook attached to a new chat, too long to send whole: its chunks stored, with `embed`'s vectors."""
    from core.chat.attachments.vectors import EmbeddedChunks

    pages = [filler_page(n) for n in range(1, 61)]
    pages[12] += " " + PLANTED
    pages[47] += " " + CAT
    (tmp_path / "logbook.txt").write_text("\n\n".join(pages), encoding="utf-8")
    index = ChunkIndex()
    document = prepare_document(tmp_path / "logbook.txt", estimate_tokens, index, embed=embed)
    first = choose_parts([document], "What combination opens the vault under the lighthouse?", 1500, index,
                         embed=embed)
    chat = store.create_conversation()
    store.add_message(chat.id, "user", "What combination opens the vault?", attachments=first.documents,
                      chunks={document.attachment.id: EmbeddedChunks(document.chunks, document.vectors)},
                      sources=first.sources)
    store.add_message(chat.id, "assistant", "7319-Quokka.")
    return store.load_conversation(chat.id).messages


def test_a_follow_up_finds_a_fact_by_meaning_in_the_stored_chunks_vectors(tmp_path):
    from core.chat.attachments.retrieval import follow_up_sources
    from core.chat.store import ChatStore

    with ChatStore(tmp_path / "chats.sqlite3") as store:
        earlier = stored_logbook(store, tmp_path, SenseEmbedder())
        assert store.search_attachments(BY_MEANING_ONLY, [earlier[0].attachments[0].id]) == []   # no word matches
        found = follow_up_sources(BY_MEANING_ONLY, earlier, store.stored_chunks(), 600, embed=SenseEmbedder())
        assert found and CAT in found[0].text and found[0].name == "logbook.txt"
        assert follow_up_sources(BY_MEANING_ONLY, earlier, store.stored_chunks(), 600) == ()      # words alone


def test_a_follow_up_ignores_vectors_from_another_embedding_model(tmp_path):
    from core.chat.attachments.retrieval import follow_up_sources
    from core.chat.store import ChatStore

    with ChatStore(tmp_path / "chats.sqlite3") as store:
        earlier = stored_logbook(store, tmp_path, SenseEmbedder())
        other_file, other_length = SenseEmbedder("other-embed.gguf"), SenseEmbedder(dimension=16)
        for other in (other_file, other_length):
            assert follow_up_sources(BY_MEANING_ONLY, earlier, store.stored_chunks(), 600, embed=other) == ()
        assert other_file.calls == 0          # a model with no stored vectors is not even asked for the question's
        words = follow_up_sources("What is the keeper's cat called?", earlier, store.stored_chunks(), 600,
                                  embed=other_file)
        assert any(CAT in source.text for source in words)        # BM25 still finds what shares its words


def test_a_document_read_without_an_embedding_model_is_stored_and_searched_by_its_words(tmp_path):
    from core.chat.attachments.retrieval import follow_up_sources
    from core.chat.store import ChatStore

    with ChatStore(tmp_path / "chats.sqlite3") as store:
        earlier = stored_logbook(store, tmp_path, None)
        assert not store.stored_chunks().has_vectors([earlier[0].attachments[0].id], "sense-embed.gguf")
        found = follow_up_sources("What is the keeper's cat called?", earlier, store.stored_chunks(), 600,
                                  embed=SenseEmbedder())
        assert any(CAT in source.text for source in found)


def test_a_document_stored_without_vectors_is_named_and_once_given_them_is_searched_by_meaning(tmp_path):
    from core.chat.attachments.meaning import chunk_vectors
    from core.chat.attachments.retrieval import follow_up_documents, follow_up_sources, without_vectors
    from core.chat.store import ChatStore

    embed = SenseEmbedder()
    with ChatStore(tmp_path / "chats.sqlite3") as store:
        earlier = stored_logbook(store, tmp_path, None)
        stored = store.stored_chunks()
        documents = list(follow_up_documents(earlier))
        assert without_vectors(documents, stored, embed) == tuple(documents)
        assert follow_up_sources(BY_MEANING_ONLY, earlier, stored, 600, embed=embed) == ()     # words alone

        for document in documents:
            assert store.add_attachment_vectors(document, chunk_vectors(stored.chunks_of(document), embed))
        assert without_vectors(documents, stored, embed) == ()
        assert without_vectors(documents, stored, SenseEmbedder("other-embed.gguf")) == tuple(documents)
        found = follow_up_sources(BY_MEANING_ONLY, earlier, stored, 600, embed=embed)
        assert found and CAT in found[0].text
