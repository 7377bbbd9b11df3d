"""Which parts of the attached documents go to the model with a question.

When the documents fit the room left in the context they go whole. Otherwise the chunks that best match the
question (BM25 over the FTS5 index, fused with a ranking by meaning when an embedding model is in the library:
meaning.py) are taken, best first, until the room is full, and sent in reading order; when
no word of the question matches, the documents' beginnings are sent. Either way the parts sent are the answer's
sources. Token counts come from the caller (the loaded model's tokenizer, core.fit.context_need), or from
`estimate_tokens` where no model is at hand.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from core.chat.attachments.attachment import Attachment, Source, text_for_model
from core.chat.attachments.chunks import Chunk, chunk_pages
from core.chat.attachments.extraction import ExtractedDocument, extract
from core.chat.attachments.index import ChunkIndex, FoundChunk
from core.chat.attachments.meaning import SearchableChunks, chunk_vectors, ranked
from core.chat.attachments.vectors import ChunkVectors, Embed, model_name

log = logging.getLogger(__name__)

TokenCount = Callable[[str], int]
SEARCH_LIMIT = 200
PART_OVERHEAD_TOKENS = 16      # the <document name=... page=...> marks around each part


def estimate_tokens(text: str) -> int:
    """About four characters a token: the figure shown until a model's tokenizer can count."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class PreparedDocument:
    """A document read, cut into chunks, counted and indexed: ready to be sent or searched."""

    attachment: Attachment
    original: Path
    chunks: tuple[Chunk, ...]
    text: str
    vectors: ChunkVectors | None = None      # the chunks' vectors, when an embedding model read them


@dataclass(frozen=True)
class DocumentUse:
    used: str                        # "whole" | "retrieved"
    sources: tuple[Source, ...]      # the parts sent, in reading order
    documents: tuple[Attachment, ...]   # the attachments, marked with how they were used
    tokens: int                      # the tokens of the parts sent


def prepare_document(path: Path | str, count: TokenCount = estimate_tokens, index: ChunkIndex | None = None, *,
                     read: Callable[[Path], ExtractedDocument] = extract,
                     embed: Embed | None = None) -> PreparedDocument:
    """Read, chunk, count and index one document (seconds for a long PDF: off the UI thread). DocumentRefused.
    `read` extracts the text (the GUI runs it in a worker process: pypdf is pure Python and holds the GIL);
    `embed` (an embedding model: core.engine.embedder.Embedder) gives the chunks vectors, added to the index and kept
    in the document (ChatStore.add_message stores them with the chunks)."""
    path = Path(path)
    extracted = read(path)
    text = extracted.text
    attachment = Attachment(path.name, "document", count(text), extracted.size_bytes, path=str(path))
    chunks = chunk_pages(extracted.pages)
    vectors = chunk_vectors(chunks, embed) if embed is not None else None
    if index is not None:
        index.add(attachment.id, chunks)
        if vectors is not None:
            index.add_vectors(attachment.id, vectors)
    return PreparedDocument(attachment, path, chunks, text, vectors)


def choose_parts(documents: Sequence[PreparedDocument], question: str, room_tokens: int, index: ChunkIndex,
                 count: TokenCount = estimate_tokens, embed: Embed | None = None) -> DocumentUse:
    """The documents whole when they fit `room_tokens`, else the most relevant chunks that fit: by BM25, fused
    with the ranking by meaning when the chunks have vectors and `embed` reads the question."""
    whole = sum(doc.attachment.tokens + PART_OVERHEAD_TOKENS for doc in documents)
    if whole <= room_tokens:
        sources = tuple(Source(doc.attachment.id, doc.attachment.name, None, -1, doc.text) for doc in documents)
        marked = tuple(replace(doc.attachment, used="whole") for doc in documents)
        return DocumentUse("whole", sources, marked, whole)
    by_id = {doc.attachment.id: doc for doc in documents}
    found = ranked(question, list(by_id), index, embed, SEARCH_LIMIT) or _beginnings(documents)
    chosen, used = _fill(found, room_tokens, count)
    order = {doc_id: place for place, doc_id in enumerate(by_id)}
    chosen.sort(key=lambda part: (order[part.attachment_id], part.position))
    sources = tuple(Source(part.attachment_id, by_id[part.attachment_id].attachment.name, part.page, part.position,
                           part.text) for part in chosen)
    marked = tuple(replace(doc.attachment, used="retrieved") for doc in documents)
    return DocumentUse("retrieved", sources, marked, used)


def follow_up_sources(question: str, earlier: Sequence, stored: SearchableChunks, room_tokens: int,
                      count: TokenCount = estimate_tokens, embed: Embed | None = None) -> tuple[Source, ...]:
    """For a question asked after documents were attached: the parts of the conversation's retrieved documents
    that best match it and were not sent before (the model already reads those), within `room_tokens`. Documents
    sent whole are in the conversation already; `earlier` is the branch's messages, oldest first; `stored` holds
    their chunks (ChatStore.stored_chunks()), ranked as the first question's were (meaning.ranked): by meaning too
    when `embed` is the model whose vectors were stored with them."""
    names = follow_up_documents(earlier)
    if not names or room_tokens <= 0:
        return ()
    sent = {(source.attachment_id, source.position) for message in earlier for source in message.sources}
    found = [part for part in ranked(question, list(names), stored, embed, SEARCH_LIMIT)
             if (part.attachment_id, part.position) not in sent]
    chosen, _ = _fill(found, room_tokens, count)
    order = {doc_id: place for place, doc_id in enumerate(names)}
    chosen.sort(key=lambda part: (order[part.attachment_id], part.position))
    return tuple(Source(part.attachment_id, names[part.attachment_id], part.page, part.position, part.text)
                 for part in chosen)


def follow_up_documents(earlier: Sequence) -> dict[str, str]:
    """The branch's documents a follow-up question searches (those too long to go whole): their names by id."""
    return {a.id: a.name for message in earlier for a in message.attachments
            if a.kind == "document" and a.used == "retrieved"}


def without_vectors(attachment_ids: Sequence[str], stored: SearchableChunks, embed: Embed) -> tuple[str, ...]:
    """Those of these documents whose stored chunks have no vectors from `embed`'s model: searched by their words
    alone until they are given some (the GUI does it in the background after a follow-up)."""
    model = model_name(embed)
    return tuple(attachment_id for attachment_id in attachment_ids if not stored.has_vectors([attachment_id], model))


def _fill(found: Sequence[FoundChunk], room: int, count: TokenCount) -> tuple[list[FoundChunk], int]:
    chosen: list[FoundChunk] = []
    used = 0
    for part in found:
        cost = count(part.text) + PART_OVERHEAD_TOKENS
        if used + cost <= room:
            chosen.append(part)
            used += cost
    return chosen, used


def _beginnings(documents: Sequence[PreparedDocument]) -> list[FoundChunk]:
    """No word of the question matched: each document's chunks from its start, taking turns."""
    longest = max((len(doc.chunks) for doc in documents), default=0)
    return [FoundChunk(doc.attachment.id, doc.chunks[i].position, doc.chunks[i].page, doc.chunks[i].text, 0.0)
            for i in range(longest) for doc in documents if i < len(doc.chunks)]


def question_with_documents(question: str, use: DocumentUse) -> str:
    """What the model reads for the question (the chat stores the question and its sources apart)."""
    return text_for_model(question, use.sources)


def documents_for_question(paths: Sequence[Path | str], question: str, room_tokens: int,
                           count: TokenCount = estimate_tokens, embed: Embed | None = None) -> DocumentUse:
    """Read and index these documents in memory and choose what goes with the question (llamadesk-cli's path).
    DocumentRefused for the first file that cannot be read: nothing is sent."""
    index = ChunkIndex()
    try:
        documents = [prepare_document(path, count, index, embed=embed) for path in paths]
        return choose_parts(documents, question, room_tokens, index, count, embed)
    finally:
        index.close()
