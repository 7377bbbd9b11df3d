"""Search by meaning: documents' chunks as vectors from an embedding model in the library, fused with BM25.

BM25 finds the chunks that share the question's words; an embedding model also finds the ones that say the same
thing in other words ("the boat left at dawn" for "when did the ship depart?"). When the library holds an
embedding model (a GGUF whose header declares a pooling type and no chat template: nomic-embed, bge, Qwen3-Embedding
...), each chunk's vector is computed when the document is read, the question's when it is asked, and the two
rankings are merged by reciprocal rank fusion: each chunk scores 1 / (RRF_K + its place) in each list it is in, so a
chunk high in both comes first and one list's odd scale never swamps the other. Without an embedding model, or for a
chunk it could not read, BM25 alone ranks, as before.

`embed` is any callable from texts to unit vectors that names its model file (vectors.Embed): the app's is
core.engine.embedder.Embedder, an engine worker of its own on the CPU (the model is small, and the chat model keeps
the GPU). Unit vectors make a dot product the cosine similarity. The chunks' vectors are kept with the chat
(vectors.py), so a follow-up question searches the stored chunks by meaning too, through the same `ranked`.
"""
from __future__ import annotations

import logging
from typing import Protocol, Sequence

from core.chat.attachments.chunks import Chunk
from core.chat.attachments.index import FoundChunk
from core.chat.attachments.vectors import ChunkVectors, Embed, VectorSpace, model_name

log = logging.getLogger(__name__)

RRF_K = 60                     # the customary constant of reciprocal rank fusion
EMBED_BATCH = 16               # chunks per request to the embedding model


class SearchableChunks(Protocol):
    """Documents' chunks searched by their words and holding their vectors: the in-memory index.ChunkIndex, and the
    chats database's stored chunks (core.chat.store.StoredChunks)."""

    def search(self, question: str, attachment_ids: Sequence[str], limit: int = ...) -> list[FoundChunk]: ...

    def has_vectors(self, attachment_ids: Sequence[str], model: str) -> bool: ...

    def vectors_of(self, attachment_ids: Sequence[str],
                   space: VectorSpace) -> list[tuple[FoundChunk, Sequence[float]]]: ...


def ranked(question: str, attachment_ids: Sequence[str], chunks: SearchableChunks, embed: Embed | None,
           limit: int) -> list[FoundChunk]:
    """These documents' chunks that best match the question, best first: by BM25, fused with the ranking by meaning
    when `embed` reads the question and the chunks have vectors of its space (model and length); else BM25 alone."""
    by_words = chunks.search(question, attachment_ids, limit=limit)
    if embed is None or not chunks.has_vectors(attachment_ids, model_name(embed)):
        return by_words
    try:
        question_vector = embed([question])[0]
    except Exception as error:  # noqa: BLE001 - the embedding model failing never stops a question
        log.info("the question could not be embedded (%s); ranking by its words alone", error)
        return by_words
    candidates = chunks.vectors_of(attachment_ids, VectorSpace(model_name(embed), len(question_vector)))
    if not candidates:
        return by_words
    return fused(by_words, nearest(question_vector, candidates, limit))


def chunk_vectors(chunks: Sequence[Chunk], embed: Embed) -> ChunkVectors | None:
    """The chunks' vectors from this model (None when it could read none of them)."""
    read = [(chunk.position, vector) for chunk, vector in zip(chunks, embed_texts([c.text for c in chunks], embed))
            if vector is not None]
    if not read:
        return None
    space = VectorSpace(model_name(embed), len(read[0][1]))
    return ChunkVectors(space, {position: vector for position, vector in read if len(vector) == space.dimension})


def embed_texts(texts: Sequence[str], embed: Embed) -> list[tuple[float, ...] | None]:
    """Each text's vector, None for one the model could not read (a batch that fails is retried text by text)."""
    vectors: list[tuple[float, ...] | None] = []
    for start in range(0, len(texts), EMBED_BATCH):
        batch = list(texts[start:start + EMBED_BATCH])
        try:
            vectors += embed(batch)
        except Exception:  # noqa: BLE001 - a text the model cannot read is searched by its words
            for text in batch:
                try:
                    vectors += embed([text])
                except Exception as error:  # noqa: BLE001 - as above
                    log.info("a chunk could not be embedded: %s", error)
                    vectors.append(None)
    return vectors


def nearest(question: Sequence[float], candidates: Sequence[tuple[FoundChunk, Sequence[float]]],
            limit: int) -> list[FoundChunk]:
    """The candidates closest in meaning to the question's vector, best first (score: cosine similarity)."""
    import numpy

    if not candidates:
        return []
    matrix = numpy.asarray([vector for _, vector in candidates], dtype=numpy.float32)
    scores = matrix @ numpy.asarray(question, dtype=numpy.float32)
    order = numpy.argsort(-scores)[:limit]
    return [_with_score(candidates[i][0], float(scores[i])) for i in order]


def fused(*rankings: Sequence[FoundChunk]) -> list[FoundChunk]:
    """Reciprocal rank fusion of several rankings of the same chunks (by attachment and position), best first."""
    scores: dict[tuple[str, int], float] = {}
    chunks: dict[tuple[str, int], FoundChunk] = {}
    for ranking in rankings:
        for place, chunk in enumerate(ranking):
            key = (chunk.attachment_id, chunk.position)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + place + 1)
            chunks.setdefault(key, chunk)
    return [_with_score(chunks[key], scores[key]) for key in sorted(scores, key=lambda key: -scores[key])]


def _with_score(chunk: FoundChunk, score: float) -> FoundChunk:
    return FoundChunk(chunk.attachment_id, chunk.position, chunk.page, chunk.text, score)
