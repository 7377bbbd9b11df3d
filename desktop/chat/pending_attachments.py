"""Files attached to the message being written, before it is sent.

`add(paths)` reads each document off the UI thread (its text extracted in a worker process, since pypdf is pure
Python and in a thread held the GIL from the UI thread for up to 0.2 s; then chunks, the loaded model's token count
and the in-memory FTS5 index in a task) and shows a chip; a file that cannot be read leaves one sentence in the notice bar and
nothing attached. After each change the planner's sentence for all of them is asked for (core.fit.context_need)
and shown under the chips, again when the chat's answer length changes (`refresh_fit`). Images alone that do not fit
get a sentence of their own (an image goes whole or not at all, no part of it can be picked), and Send then sends
nothing: the question goes back to the message box and the images stay attached. An image is attached only when
the loaded model can see (it has a projector); otherwise the notice and the tray say so instead of dropping it.
An image's chip shows its token count where the projector fixes it (core.fit.projector.fixed_image_tokens),
"counted when sent" where the image's size decides.
When the planner says a larger context would hold everything, the tray offers that reload. `take(question, ...)`
chooses what goes to the model (core.chat.attachments.retrieval) off the UI thread and hands back the attachments,
their chunks (with their vectors when the library's embedding model read them, to be stored with the chat) and the
sources, then empties the tray. `follow_up` searches a chat's stored chunks again for a later question, by meaning
too when the same embedding model is in the library; documents stored without vectors of that model are then
embedded in the background (one job per document at a time; a failure is logged, words still work) and their vectors
handed to the caller to store, so the next follow-up searches them by meaning too.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Signal

from core import settings as settings_store
from core.chat.attachments.attachment import Attachment
from core.chat.attachments.extraction import document_format, extract
from core.chat.attachments.index import ChunkIndex
from core.chat.attachments.meaning import chunk_vectors
from core.chat.attachments.retrieval import (DocumentUse, PreparedDocument, choose_parts, estimate_tokens,
                                             follow_up_documents, follow_up_sources, prepare_document,
                                             without_vectors)
from core.chat.attachments.vectors import ChunkVectors, EmbeddedChunks
from core.chat.store import StoredChunks
from core.engine.embedder import Embedder
from core.fit.context_need import RAISE, TOO_LONG, ContextNeed, TokenCounter, images_left_out, need_for_loaded
from core.models import library
from core.fit.projector import fixed_image_tokens, read_projector_info
from desktop.chat.attachment_tray import AttachmentTray, ChipView
from desktop.engine_session import EngineSession
from desktop.models.picker.work import WorkerProcesses
from desktop.tasks import Task

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp"})
PROMPT_SLACK_TOKENS = 64           # the chat template's own marks around the turns
NO_MODEL_CONTEXT = 4096
FOLLOW_UP_SHARE = 0.25             # of the context, for the parts a follow-up question finds in earlier documents

_extractors = WorkerProcesses(workers=1)     # started on the first attachment
_counters: dict[str, TokenCounter] = {}
_counters_lock = threading.Lock()


def token_counter(model_path: str | None) -> Callable[[str], int]:
    """The loaded model's own tokenizer (made once per model, in the calling worker thread), else the estimate."""
    if not model_path:
        return estimate_tokens
    with _counters_lock:
        if model_path not in _counters:
            try:
                _counters[model_path] = TokenCounter(model_path)
            except ValueError:
                return estimate_tokens
        return _counters[model_path]


@lru_cache(maxsize=8)
def image_tokens(projector_path: str) -> int | None:
    """The tokens every image takes with this projector (read from its header: off the UI thread), None for the
    projectors that size each image by its own size (counted by the engine when it is sent)."""
    return fixed_image_tokens(read_projector_info(projector_path))


KeepVectors = Callable[[str, ChunkVectors, Callable[[BaseException | None], None]], None]
"""keep(attachment_id, vectors, finished): store a document's new vectors, then finished(None), or finished(error)."""


@dataclass(frozen=True)
class FollowUpFound:
    sources: tuple                      # the parts to send with the question
    without_vectors: tuple[str, ...]    # the searched documents with no vectors of the library's embedding model


class ImagesTooLong(ValueError):
    """The attached images (nothing else) do not fit the context left: nothing was sent."""


class PendingAttachments(QObject):
    notice = Signal(str, str)          # level, sentence
    changed = Signal()                 # attached, read, or taken off

    def __init__(self, session: EngineSession, tray: AttachmentTray, parent=None) -> None:
        super().__init__(parent)
        self._session = session
        self._tray = tray
        self._index = ChunkIndex()
        self._documents: dict[str, PreparedDocument] = {}
        self._images: dict[str, Attachment] = {}
        self._reading: set[str] = set()
        self.chat_tokens = 0            # the context the chat already fills (the last answer's figure)
        self.answer_tokens = 1024       # room kept for the answer (the chat's max_tokens)
        self._fit_asked = 0             # counts the fit questions: only the newest answer is shown
        self._need: ContextNeed | None = None     # the planner's newest answer
        self._embedding: set[str] = set()         # stored documents being given vectors now
        tray.removed.connect(self.remove)
        session.loaded.connect(lambda _model: self.refresh_fit())

    # --- state ---

    @property
    def empty(self) -> bool:
        return not (self._documents or self._images or self._reading)

    @property
    def reading(self) -> bool:
        return bool(self._reading)

    def document_tokens(self) -> int:
        return sum(doc.attachment.tokens for doc in self._documents.values())

    def image_tokens(self) -> int:
        """The images' tokens where the projector fixes them (0 for those counted only when sent)."""
        return sum(image.tokens for image in self._images.values())

    def warm_up(self) -> None:
        """Start the document reader's worker process now, off the UI thread, so the first attach does not wait."""
        Task(_extractors.run, document_format, Path("warm-up.txt"), parent=self).run_in_background()

    # --- changes ---

    def add(self, paths: list[Path]) -> None:
        for path in paths:
            path = Path(path)
            if path.suffix.lower() in IMAGE_SUFFIXES:
                self._add_image(path)
            elif document_format(path) is None:
                self._refuse(f"{path.name} was not attached: LlamaDesk reads text, Markdown, source code, PDF, "
                             "Word (.docx) and HTML documents, and images for vision models.")
            else:
                self._add_document(path)

    def remove(self, chip_id: str) -> None:
        self._documents.pop(chip_id, None)
        self._images.pop(chip_id, None)
        self._reading.discard(chip_id)
        self._index.remove(chip_id)
        self._tray.remove_chip(chip_id)
        self.refresh_fit()
        self.changed.emit()

    def clear(self) -> None:
        for chip_id in list(self._documents) + list(self._images):
            self._index.remove(chip_id)
        self._documents.clear()
        self._images.clear()
        self._reading.clear()
        self._tray.clear()
        self.changed.emit()

    def _add_image(self, path: Path) -> None:
        model = self._session.model
        if model is None or getattr(model, "projector", None) is None:
            name = Path(model.model_path).name if model else "No model is loaded, and a model"
            self._refuse(f"{path.name} was not attached: {name} cannot look at images. Load a vision model with "
                         "its projector (mmproj file) to ask about pictures.")
            return
        try:
            size = path.stat().st_size
        except OSError as error:
            self._refuse(f"Could not read {path.name}: {error.strerror or error}.")
            return
        image = Attachment(path.name, "image", 0, size, "image", path=str(path))
        self._images[image.id] = image
        self._tray.show_chip(ChipView(image.id, image.name, "image", None))
        (Task(image_tokens, model.projector.path, parent=self)
         .success(lambda tokens: self._image_counted(image.id, tokens))
         .failure(lambda _error: self._image_counted(image.id, None))
         .run_in_background())
        self.changed.emit()

    def _image_counted(self, image_id: str, tokens: int | None) -> None:
        """tokens: what every image takes with this projector; None when it depends on the image's own size."""
        image = self._images.get(image_id)
        if image is None:                                   # taken off meanwhile
            return
        image = self._images[image_id] = replace(image, tokens=tokens or 0)
        self._tray.show_chip(ChipView(image.id, image.name, "image", tokens or 0, counted=tokens is not None))
        self.refresh_fit()

    def _refuse(self, sentence: str) -> None:
        self.notice.emit("error", sentence)
        self._tray.show_refusal(sentence)

    def _add_document(self, path: Path) -> None:
        reading_id = f"reading:{path}"
        if reading_id in self._reading:
            return
        self._reading.add(reading_id)
        self._tray.show_chip(ChipView(reading_id, path.name, "document", None))
        model = self._session.model
        model_path = model.model_path if model else None
        (Task(_prepare, path, model_path, self._index, parent=self)
         .success(lambda document: self._document_ready(reading_id, document, counted=bool(model_path)))
         .failure(lambda error: self._document_refused(reading_id, error))
         .run_in_background())
        self.changed.emit()

    def _document_ready(self, reading_id: str, document: PreparedDocument, *, counted: bool) -> None:
        self._tray.remove_chip(reading_id)
        if reading_id not in self._reading:            # taken off while it was read
            self._index.remove(document.attachment.id)
            return
        self._reading.discard(reading_id)
        self._documents[document.attachment.id] = document
        attachment = document.attachment
        self._tray.show_chip(ChipView(attachment.id, attachment.name, "document", attachment.tokens, counted))
        self.refresh_fit()
        self.changed.emit()

    def _document_refused(self, reading_id: str, error: BaseException) -> None:
        self._reading.discard(reading_id)
        self._tray.remove_chip(reading_id)
        self._refuse(f"Not attached: {error}")
        self.changed.emit()

    # --- the fit sentence ---

    def refresh_fit(self) -> None:
        """Ask the planner for the fit sentence again: after each change of the attachments, and when the chat's
        answer length (`answer_tokens`) or what the chat fills (`chat_tokens`) changed."""
        self._fit_asked += 1
        asked = self._fit_asked
        model = self._session.model
        if not self._documents and not self.image_tokens():
            self._tray.show_fit("")
            return
        if model is None:
            self._tray.show_fit("open a model to see whether the documents fit its context")
            return
        (Task(need_for_loaded, self._needed_tokens(), model, parent=self)
         .success(lambda need: self._show_fit(asked, need))
         .failure(lambda error: self._show_fit_failure(asked, error))
         .run_in_background())

    def _show_fit(self, asked: int, need: ContextNeed) -> None:
        if asked != self._fit_asked:                      # the attachments or the settings changed meanwhile
            return
        self._need = need
        if need.verdict == TOO_LONG and self._images_alone():
            self._tray.show_fit(f"too long: {self._images_left_out()}")
            return
        self._tray.show_fit(need.sentence, need.needed_context if need.verdict == RAISE else 0)

    def _show_fit_failure(self, asked: int, error: BaseException) -> None:
        if asked == self._fit_asked:
            self._tray.show_fit(f"could not plan the context ({error})")

    def _needed_tokens(self) -> int:
        return (self.chat_tokens + self.document_tokens() + self.image_tokens() + self.answer_tokens
                + PROMPT_SLACK_TOKENS)

    def _images_alone(self) -> bool:
        return bool(self._images) and not self._documents and not self._reading

    def _images_left_out(self) -> str:
        """Why the images alone cannot go, and what would make room (see core.fit.context_need.images_left_out)."""
        context, room, _path = self._room()
        need = self._need
        raisable = need is not None and need.verdict == RAISE and need.tokens == self._needed_tokens()
        return images_left_out(self.image_tokens(), len(self._images), context=context, room=room,
                               answer_tokens=self.answer_tokens, chat=self.chat_tokens > 0, raisable=raisable)

    # --- sending ---

    def _room(self) -> tuple[int, int, str | None]:
        """(the context, the tokens it leaves for what is attached, the loaded model's path)."""
        model = self._session.model
        context = model.n_ctx if model else NO_MODEL_CONTEXT
        return context, context - self.chat_tokens - self.answer_tokens - PROMPT_SLACK_TOKENS, \
            model.model_path if model else None

    def take(self, question: str, done: Callable[[tuple[Attachment, ...], dict, tuple], None],
             failed: Callable[[BaseException], None]) -> None:
        """Choose the parts to send (off the UI thread), then done(attachments, chunks by id, sources) and clear."""
        documents, images = list(self._documents.values()), tuple(self._images.values())
        context, room, model_path = self._room()
        if images and self._session.model is not None and self.image_tokens() > room:
            # an image goes whole or not at all, with documents or without: nothing is sent, the images stay
            failed(ImagesTooLong(self._images_left_out()))   # the caller puts the question back and says why
            return
        room -= self.image_tokens()            # the documents' parts go in what the images leave

        def chosen(use: DocumentUse | None) -> None:
            chunks = {doc.attachment.id: EmbeddedChunks(doc.chunks, doc.vectors) for doc in documents}
            attachments = (use.documents if use else ()) + images
            self.clear()
            done(attachments, chunks, use.sources if use else ())

        if not documents:
            chosen(None)
            return
        (Task(_choose, documents, question, room, self._index, model_path, parent=self)
         .success(chosen).failure(failed).run_in_background())

    def follow_up(self, question: str, earlier: list, stored: StoredChunks,
                  done: Callable[[tuple], None], keep_vectors: KeepVectors | None = None) -> None:
        """A question with nothing attached, in a chat whose documents were too long to send whole: done(sources)
        with the parts of them that match it and were not sent yet (off the UI thread), at most FOLLOW_UP_SHARE
        of the context whatever the chat already fills (the engine drops its oldest turns to make room, as it does
        for any long chat); done(()) when there are none or the search fails (the question goes as it is).
        Documents it found without vectors of the library's embedding model are then embedded in the background and
        handed to `keep_vectors`, for the next follow-up; this one goes on by their words."""
        context, _room, model_path = self._room()
        room = min(int(context * FOLLOW_UP_SHARE), context - self.answer_tokens - PROMPT_SLACK_TOKENS)
        (Task(_follow_up, question, earlier, stored, room, model_path, parent=self)
         .success(lambda found: self._followed_up(found, stored, done, keep_vectors))
         .failure(lambda _error: done(())).run_in_background())

    def _followed_up(self, found: FollowUpFound, stored: StoredChunks, done: Callable[[tuple], None],
                     keep_vectors: KeepVectors | None) -> None:
        done(found.sources)
        if keep_vectors is not None:
            for attachment_id in found.without_vectors:
                self._embed_stored(attachment_id, stored, keep_vectors)

    def _embed_stored(self, attachment_id: str, stored: StoredChunks, keep_vectors: KeepVectors) -> None:
        """Give a stored document's chunks vectors off the UI thread, then have them kept (one job per document)."""
        if attachment_id in self._embedding:
            return
        self._embedding.add(attachment_id)

        def embedded(vectors: ChunkVectors | None) -> None:
            if vectors is None:
                self._vectors_kept(attachment_id, None)
            else:
                keep_vectors(attachment_id, vectors, lambda error: self._vectors_kept(attachment_id, error))

        (Task(_stored_vectors, attachment_id, stored, parent=self)
         .success(embedded).failure(lambda error: self._vectors_kept(attachment_id, error)).run_in_background())

    def _vectors_kept(self, attachment_id: str, error: BaseException | None) -> None:
        self._embedding.discard(attachment_id)
        if error is not None:      # the document is still searched by its words
            log.warning("could not give the stored document %s vectors: %s", attachment_id, error)


def _follow_up(question: str, earlier: list, stored: StoredChunks, room: int,
               model_path: str | None) -> FollowUpFound:
    count = token_counter(model_path)
    embed = library_embedder()
    sources = follow_up_sources(question, earlier, stored, max(room - count(question), 0), count, embed)
    missing = without_vectors(list(follow_up_documents(earlier)), stored, embed) if embed is not None else ()
    return FollowUpFound(sources, missing)


def _stored_vectors(attachment_id: str, stored: StoredChunks) -> ChunkVectors | None:
    """A stored document's chunks' vectors from the library's embedding model (None without one, or none read)."""
    embed = library_embedder()
    chunks = stored.chunks_of(attachment_id) if embed is not None else []
    return chunk_vectors(chunks, embed) if chunks else None


def _prepare(path: Path, model_path: str | None, index: ChunkIndex) -> PreparedDocument:
    return prepare_document(path, token_counter(model_path), index,
                            read=lambda file: _extractors.run(extract, file), embed=library_embedder())


def _choose(documents, question: str, room: int, index: ChunkIndex, model_path: str | None) -> DocumentUse:
    count = token_counter(model_path)
    return choose_parts(documents, question, max(room - count(question), 0), index, count, library_embedder())


class _LibraryEmbedder:
    """The library's embedding model, to search documents by meaning too (None without one). The library is looked
    at in the reader process (reading headers holds the GIL), and again after RECHECK_SECONDS while none was found,
    so a model downloaded meanwhile is used. Call it off the UI thread."""

    RECHECK_SECONDS = 300.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: Embedder | None = None
        self._checked = float("-inf")

    def __call__(self) -> Embedder | None:
        with self._lock:
            if self._model is None and time.monotonic() - self._checked > self.RECHECK_SECONDS:
                self._checked = time.monotonic()
                path = _extractors.run(library.embedding_model_path, tuple(settings_store.load().model_folders))
                self._model = Embedder(path, threads=1) if path is not None else None
            return self._model


library_embedder = _LibraryEmbedder()
