"""Searching documents by meaning with an embedding model from the library, through the real engine.

The embedding model is a tiny random-weight one shaped as Qwen3-Embedding (tests/fixtures/tiny_gguf.py): its vectors
carry no meaning, but the same text always gets the same vector, which is enough to check the path: chunks get
vectors when read, the question's vector finds its twin, and the fused ranking keeps what BM25 found. The vectors are
kept with the chat's stored chunks, so a follow-up finds by its vector a chunk that no word of it matches, and only
with the model that made them."""
from __future__ import annotations

import gguf
import pytest

from core.chat.attachments.index import ChunkIndex, FoundChunk
from core.chat.attachments.meaning import embed_texts, fused, nearest
from core.chat.attachments.retrieval import choose_parts, estimate_tokens, follow_up_sources, prepare_document
from core.chat.attachments.vectors import EmbeddedChunks, VectorSpace
from core.chat.store import ChatStore
from core.engine.embedder import Embedder
from core.models import library
from tests.fixtures.tiny_gguf import write_tiny_model
from tests.unit.test_attachments import PLANTED, filler_page, pdf_with_pages

# Only stop words: the words search drops them all, so only the vector can find the page holding this.
ECHO = "Where was it, and who was there with them? It was there, and so it is."


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("embed") / "tiny-embed.gguf", architecture="qwen3",
                            chat_template=None, pooling=gguf.PoolingType.LAST, name="tiny-embed", context_length=2048)


@pytest.fixture(scope="module")
def embedder(embedding_model):
    model = Embedder(embedding_model, threads=1)
    yield model
    model.close()


def test_the_library_finds_its_embedding_model_and_not_a_chat_model(embedding_model, smollm2, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / embedding_model.name).symlink_to(embedding_model)
    (folder / smollm2.name).symlink_to(smollm2)
    assert library.embedding_model_path([str(folder)]) == folder / embedding_model.name
    (folder / embedding_model.name).unlink()
    assert library.embedding_model_path([str(folder)]) is None


def test_a_question_finds_the_chunk_that_says_the_same_by_its_vector(embedder):
    texts = [f"Entry {n}: the tide, the boats and the nets." for n in range(12)]
    vectors = embed_texts(texts, embedder)
    assert all(vector is not None and len(vector) == 64 for vector in vectors)
    candidates = [(FoundChunk("doc", n, None, text, 0.0), vector)
                  for n, (text, vector) in enumerate(zip(texts, vectors))]
    best = nearest(embedder([texts[7]])[0], candidates, limit=3)
    assert best[0].position == 7 and best[0].score == pytest.approx(1.0, abs=1e-4)


def test_a_text_longer_than_the_model_reads_is_embedded_from_its_beginning(embedder):
    beginning = "The harbour logbook, volume two. " * 12
    vectors = embed_texts([beginning + "x " * 3000, beginning + "y " * 3000], embedder)
    assert vectors[0] is not None and vectors[1] is not None


def test_a_text_the_model_cannot_read_is_left_to_the_words(embedder):
    vectors = embed_texts(["Entry 1: the tide.", ""], embedder)       # an empty text has nothing to embed
    assert vectors[0] is not None and vectors[1] is None


def test_fusion_puts_first_what_both_rankings_place_high():
    def ranking(*positions):
        return [FoundChunk("doc", p, None, str(p), 0.0) for p in positions]

    merged = fused(ranking(1, 2, 3, 4), ranking(3, 9, 1))
    assert [chunk.position for chunk in merged][:2] == [1, 3]
    assert {chunk.position for chunk in merged} == {1, 2, 3, 4, 9}


def test_a_long_document_read_with_the_embedding_model_still_finds_the_planted_fact(embedder, tmp_path):
    pages = [filler_page(n) for n in range(1, 61)]
    pages[33] += " " + PLANTED
    path = tmp_path / "logbook.txt"
    path.write_text("\n\n".join(pages), encoding="utf-8")
    index = ChunkIndex()
    document = prepare_document(path, estimate_tokens, index, embed=embedder)
    assert len(index.vectors_of([document.attachment.id], document.vectors.space)) == len(document.chunks)
    use = choose_parts([document], "What combination opens the vault under the lighthouse?", 1500, index,
                       estimate_tokens, embedder)
    assert use.used == "retrieved"
    assert any("7319-Quokka" in source.text for source in use.sources)


def chat_with_stored_logbook(store: ChatStore, embedder, tmp_path):
    """A 40-page logbook (page 26 is ECHO) sent in parts with a first question; its chunks stored with their vectors.
    Returns the branch and the stored page 26."""
    pages = [filler_page(n) for n in range(1, 41)]
    pages[9] += " " + PLANTED
    pages[25] = ECHO
    index = ChunkIndex()
    document = prepare_document(pdf_with_pages(tmp_path / "logbook.pdf", pages), estimate_tokens, index,
                                embed=embedder)
    first = choose_parts([document], "What combination opens the vault under the lighthouse?", 400, index)
    assert first.used == "retrieved" and [source.page for source in first.sources] == [10]
    chat = store.create_conversation()
    store.add_message(chat.id, "user", "What combination opens the vault?", attachments=first.documents,
                      chunks={document.attachment.id: EmbeddedChunks(document.chunks, document.vectors)},
                      sources=first.sources)
    store.add_message(chat.id, "assistant", "7319-Quokka.")
    echo = [chunk for chunk in store.attachment_chunks(document.attachment.id) if chunk.page == 26]
    return store.load_conversation(chat.id).messages, echo[0]


def test_a_follow_up_finds_a_stored_chunk_by_the_vector_kept_with_it(embedder, tmp_path):
    with ChatStore(tmp_path / "chats.sqlite3") as store:
        earlier, echo = chat_with_stored_logbook(store, embedder, tmp_path)
        document_id = earlier[0].attachments[0].id
        space = VectorSpace(embedder.model_path.name, 64)                         # the tiny model's n_embd
        assert len(store.stored_chunks().vectors_of([document_id], space)) == 40
        assert store.search_attachments(echo.text, [document_id]) == []            # no word to match
        found = follow_up_sources(echo.text, earlier, store.stored_chunks(), 400, estimate_tokens, embedder)
        assert 26 in [source.page for source in found]
        assert follow_up_sources(echo.text, earlier, store.stored_chunks(), 400, estimate_tokens) == ()


def test_a_follow_up_with_another_embedding_model_ignores_the_stored_vectors(embedder, embedding_model, tmp_path):
    renamed = tmp_path / "other-embed.gguf"          # the very same weights under another name: another model
    renamed.symlink_to(embedding_model)
    other = Embedder(renamed, threads=1)
    try:
        with ChatStore(tmp_path / "chats.sqlite3") as store:
            earlier, echo = chat_with_stored_logbook(store, embedder, tmp_path)
            assert follow_up_sources(echo.text, earlier, store.stored_chunks(), 400, estimate_tokens, other) == ()
            by_words = follow_up_sources("When were the nets mended?", earlier, store.stored_chunks(), 400,
                                         estimate_tokens, other)
            assert by_words and all("nets were mended" in source.text for source in by_words)
    finally:
        other.close()

