"""Attachments in the chat as a user drives it (offscreen, the real SmolLM2 engine, a real ChatStore): the chip
with its token count and the planner's sentence before sending, the sources under the answer that open to show
their text, bad files refused with a sentence and nothing sent, images refused by a model that cannot see."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QMimeData, QUrl

from desktop.chat.source_dialog import SourceDialog
from tests.gui.test_chat_workspace import (ANSWER_TIMEOUT_MS, ask_and_wait, click_link, ready, send,  # noqa: F401
                                           settle, workspace)
from tests.unit.test_attachments import PLANTED, filler_page, pdf_with_pages

pytestmark = pytest.mark.model


def attach_and_wait(qtbot, workspace, *paths) -> None:
    workspace.pane.files_given.emit(list(paths))
    qtbot.waitUntil(lambda: not workspace.attachments.reading, timeout=120_000)   # the first starts the reader process


def test_a_long_document_shows_its_chip_tokens_and_fit_then_its_sources_under_the_answer(qtbot, ready, session,
                                                                                         store, tmp_path):
    pages = [filler_page(n) for n in range(1, 121)]
    pages[26] += " " + PLANTED
    pages[99] += " The keeper's cat is called Marmalade and sleeps on the lamp room stairs."
    path = pdf_with_pages(tmp_path / "logbook.pdf", pages)
    attach_and_wait(qtbot, ready, path)
    chips = ready.pane.tray.chips()
    assert len(chips) == 1 and chips[0].label.text().startswith("logbook.pdf · ")
    tokens = ready.attachments.document_tokens()
    assert tokens > 2048 and f"{tokens:,} tokens" in chips[0].label.text()
    qtbot.waitUntil(lambda: ready.pane.tray.fit.text() != "", timeout=30_000)
    assert ready.pane.tray.fit.text() == "Too long: the most relevant parts will be used"

    # ~1,900 prompt tokens (the room a 2k context leaves): give a busy 2-core machine time to read them
    with qtbot.waitSignal(session.answer_finished, timeout=4 * ANSWER_TIMEOUT_MS):
        send(qtbot, ready, "Which combination opens the vault under the lighthouse?")
    settle(qtbot, ready)
    assert ready.pane.tray.isHidden() and ready.pane.tray.chips() == []
    question, answer = ready.conversation.messages[-2:]
    assert [a.name for a in question.attachments] == ["logbook.pdf"] and question.attachments[0].used == "retrieved"
    labels = [source.label for source in answer_sources_of(ready, answer)]
    assert "logbook.pdf p. 27" in labels
    assert "Sources: " in ready.pane.view.toPlainText() and "logbook.pdf p. 27" in ready.pane.view.toPlainText()

    number = labels.index("logbook.pdf p. 27")
    click_link(ready, "source", f"{answer.id}/{number}")
    dialog = ready.findChild(SourceDialog)
    assert dialog is not None and dialog.isVisible()
    assert "logbook.pdf" in dialog.heading.text() and "page 27" in dialog.heading.text()
    assert "7319-Quokka" in dialog.text.toPlainText()
    dialog.close()

    stored = store.load_conversation(ready.conversation.id).messages[-2]
    assert stored.attachments[0].name == "logbook.pdf" and stored.sources == question.sources

    # A follow-up with nothing attached searches the stored document again for the parts it asks about.
    with qtbot.waitSignal(session.answer_finished, timeout=4 * ANSWER_TIMEOUT_MS):
        send(qtbot, ready, "What is the keeper's cat called?")
    settle(qtbot, ready)
    follow_up, second_answer = ready.conversation.messages[-2:]
    assert follow_up.attachments == ()
    assert "logbook.pdf p. 100" in [source.label for source in answer_sources_of(ready, second_answer)]
    assert not {s.position for s in follow_up.sources} & {s.position for s in question.sources}


def ask_about_a_logbook_with_a_cat_page(qtbot, ready, session, tmp_path):
    """A 40-page logbook (the vault's combination on page 10, a cat on page 31) attached and asked about; its
    stored attachment."""
    from tests.unit.test_attachments import CAT

    pages = [filler_page(n) for n in range(1, 41)]
    pages[9] += " " + PLANTED
    pages[30] += " " + CAT
    attach_and_wait(qtbot, ready, pdf_with_pages(tmp_path / "logbook.pdf", pages))
    with qtbot.waitSignal(session.answer_finished, timeout=4 * ANSWER_TIMEOUT_MS):
        send(qtbot, ready, "Which combination opens the vault under the lighthouse?")
    settle(qtbot, ready)
    return ready.conversation.messages[-2].attachments[0]


def test_a_follow_up_finds_by_meaning_the_part_whose_vector_was_stored_with_the_chat(qtbot, ready, session, store,
                                                                                     tmp_path, monkeypatch):
    from desktop.chat import pending_attachments
    from tests.unit.test_attachments import BY_MEANING_ONLY, SenseEmbedder

    embedder = SenseEmbedder()
    monkeypatch.setattr(pending_attachments, "library_embedder", lambda: embedder)   # the library's embedding model
    document = ask_about_a_logbook_with_a_cat_page(qtbot, ready, session, tmp_path)
    assert store.stored_chunks().has_vectors([document.id], "sense-embed.gguf")

    with qtbot.waitSignal(session.answer_finished, timeout=4 * ANSWER_TIMEOUT_MS):
        send(qtbot, ready, BY_MEANING_ONLY)                 # no word of it is in the logbook: found by its vector
    settle(qtbot, ready)
    assert "logbook.pdf p. 31" in [source.label for source in ready.conversation.messages[-2].sources]


def test_a_chat_stored_without_vectors_gets_them_after_one_follow_up_and_the_next_finds_by_meaning(
        qtbot, ready, session, store, tmp_path, monkeypatch):
    from desktop.chat import pending_attachments
    from tests.unit.test_attachments import BY_MEANING_ONLY, SenseEmbedder

    library = {"embedder": None}                          # no embedding model in the library when it was attached
    monkeypatch.setattr(pending_attachments, "library_embedder", lambda: library["embedder"])
    document = ask_about_a_logbook_with_a_cat_page(qtbot, ready, session, tmp_path)
    assert not store.stored_chunks().has_vectors([document.id], "sense-embed.gguf")

    library["embedder"] = SenseEmbedder()                 # one is downloaded later
    with qtbot.waitSignal(session.answer_finished, timeout=4 * ANSWER_TIMEOUT_MS):
        send(qtbot, ready, BY_MEANING_ONLY)               # by words only: nothing found, the answer is not held up
    settle(qtbot, ready)
    assert ready.conversation.messages[-2].sources == ()
    qtbot.waitUntil(lambda: store.stored_chunks().has_vectors([document.id], "sense-embed.gguf"), timeout=30_000)
    qtbot.waitUntil(lambda: ready.queue.idle, timeout=10_000)

    with qtbot.waitSignal(session.answer_finished, timeout=4 * ANSWER_TIMEOUT_MS):
        send(qtbot, ready, BY_MEANING_ONLY)               # now by meaning too
    settle(qtbot, ready)
    assert "logbook.pdf p. 31" in [source.label for source in ready.conversation.messages[-2].sources]


def answer_sources_of(workspace, answer):
    return workspace.conversation.message(answer.parent_id).sources


def test_a_short_document_fits_and_goes_whole(qtbot, ready, session, tmp_path):
    (tmp_path / "note.md").write_text("The picnic is on Saturday at noon.", encoding="utf-8")
    attach_and_wait(qtbot, ready, tmp_path / "note.md")
    qtbot.waitUntil(lambda: ready.pane.tray.fit.text() != "", timeout=30_000)
    assert ready.pane.tray.fit.text() == "Fits the current 2k context"
    ask_and_wait(qtbot, ready, session, "When is the picnic?")
    assert [s.label for s in ready.conversation.messages[-2].sources] == ["note.md (whole)"]


def test_bad_files_are_refused_with_a_sentence_and_the_chat_stays_usable(qtbot, ready, session, tmp_path):
    notices = []
    ready.notice.connect(lambda level, sentence: notices.append(sentence))
    (tmp_path / "program.txt").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "fake.pdf").write_text("words", encoding="utf-8")
    secret = pdf_with_pages(tmp_path / "secret.pdf", ["hidden"], password="pw")
    attach_and_wait(qtbot, ready, tmp_path / "program.txt", tmp_path / "fake.pdf", secret)
    assert any("program.txt is not text" in n for n in notices)
    assert any("fake.pdf is not a PDF" in n for n in notices)
    assert any("secret.pdf is protected by a password" in n for n in notices)
    assert ready.pane.tray.chips() == [] and ready.attachments.empty
    finished = ask_and_wait(qtbot, ready, session, "Say hello.")
    assert finished.text is not None and ready.conversation.messages[-2].attachments == ()


def test_an_image_for_a_model_without_vision_says_so_instead_of_being_dropped(qtbot, ready, tmp_path):
    notices = []
    ready.notice.connect(lambda level, sentence: notices.append(sentence))
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    attach_and_wait(qtbot, ready, tmp_path / "cat.png")
    assert ready.attachments.empty
    assert any("cat.png was not attached" in n and "cannot look at images" in n for n in notices)
    assert ready.pane.tray.refusal.isVisible() and "cannot look at images" in ready.pane.tray.refusal.text()


def test_a_document_that_needs_a_larger_context_offers_the_reload(qtbot, ready, tmp_path):
    (tmp_path / "log.txt").write_text("\n\n".join(filler_page(n) for n in range(1, 17)), encoding="utf-8")
    attach_and_wait(qtbot, ready, tmp_path / "log.txt")
    tray = ready.pane.tray
    qtbot.waitUntil(lambda: tray.fit.text() != "", timeout=30_000)
    assert tray.fit.text().startswith("Needs a 4k context: +") and tray.fit.text().endswith("raise the context?")
    assert tray.raise_button.isVisible() and tray.raise_button.text() == "Raise the context to 4k"
    with qtbot.waitSignal(ready.context_raise_requested, timeout=5000) as asked:
        tray.raise_button.click()
    assert asked.args == [4096]


def test_files_dropped_or_pasted_on_the_message_box_are_attached(qtbot, ready, tmp_path):
    (tmp_path / "todo.txt").write_text("buy bread", encoding="utf-8")
    given = []
    ready.pane.composer.files_given.connect(given.append)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "todo.txt"))])
    assert ready.pane.composer.canInsertFromMimeData(mime)
    ready.pane.composer.insertFromMimeData(mime)
    assert given == [[tmp_path / "todo.txt"]] and ready.pane.composer.toPlainText() == ""
    qtbot.waitUntil(lambda: len(ready.pane.tray.chips()) == 1 and not ready.attachments.reading, timeout=30_000)
    assert "todo.txt" in ready.pane.tray.chips()[0].label.text()
