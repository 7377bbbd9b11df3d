"""Vision in the app as a user sees it (offscreen, real components): a tiny vision model and its projector (written
by tests/fixtures/tiny_vision.py) loaded by the real engine through libmtmd; the image's chip with its token count,
its thumbnail in the sent message that opens the whole image; a model without vision refusing an image in the tray;
and the picker showing a vision model once, marked, with its projector downloaded beside it from the fake hub."""
from __future__ import annotations

import os

import pytest
from PySide6.QtGui import QTextFormat, QTextImageFormat

from core.engine.protocol import LoadSettings
from core.models.projectors import projector_path_for_load
from desktop.chat.image_dialog import ImageDialog
from desktop.chat.thumbnails import placeholder, shared_thumbnails
from desktop.models.picker.badges import badge_text
from tests.fixtures.fake_hub import fake_hub  # noqa: F401  (fixture)
from tests.fixtures.tiny_vision import TinyProjector, write_png, write_tiny_vision_model
from tests.gui.test_chat_workspace import ANSWER_TIMEOUT_MS, click_link, send, settle, workspace  # noqa: F401
from tests.gui.test_model_picker import (TIMEOUT_MS, _shown_text, make_picker, served, user_folder,  # noqa: F401
                                        wait_checked)

SCREENSHOTS = os.environ.get("LLAMADESK_SCREENSHOTS", "")      # a folder: the tests save what they show there
REPO = "tester/Tiny-Vision-GGUF"


def save_screenshot(qtbot, widget, name: str) -> None:
    if SCREENSHOTS:
        qtbot.wait(300)                       # the layout follows the last change first
        widget.grab().save(os.path.join(SCREENSHOTS, f"vision-{name}.png"))


@pytest.fixture
def vision(tmp_path):
    return write_tiny_vision_model(tmp_path / "vision")


def load(qtbot, workspace, session, model_path: str, projector_path: str | None) -> None:
    with qtbot.waitSignal(session.loaded, timeout=ANSWER_TIMEOUT_MS):
        session.load(LoadSettings(model_path=model_path, n_ctx=1024, n_threads=2, projector_path=projector_path))
    workspace.set_model_ready(True, "tiny vision")
    workspace.pane.settings.max_tokens.setValue(4)
    workspace.pane.settings.flush()


def image_anchors(view) -> list[tuple[str, str]]:
    """(image name, link) of every picture in the chat document."""
    found = []
    block = view.document().begin()
    while block.isValid():
        iterator = block.begin()
        while not iterator.atEnd():
            char_format = iterator.fragment().charFormat()
            if char_format.objectType() == QTextFormat.ObjectTypes.ImageObject:
                found.append((QTextImageFormat(char_format).name(), char_format.anchorHref()))
            iterator += 1
        block = block.next()
    return found


def test_an_images_chip_counts_its_tokens_and_the_sent_message_shows_its_thumbnail(qtbot, workspace, session,
                                                                                    vision, tmp_path):
    load(qtbot, workspace, session, str(vision.model), projector_path_for_load(vision.model))
    assert session.model.projector is not None, "the projector beside the model was found and loaded"
    picture = write_png(tmp_path / "cat.png", 400, 240)
    workspace.pane.files_given.emit([picture])
    tokens = TinyProjector().image_tokens
    chip = workspace.pane.tray.chips()[0]
    qtbot.waitUntil(lambda: "tokens" in chip.label.text(), timeout=TIMEOUT_MS)
    assert chip.label.text() == f"cat.png · image · {tokens} tokens"
    save_screenshot(qtbot, workspace, "chip")

    with qtbot.waitSignal(session.answer_finished, timeout=ANSWER_TIMEOUT_MS):
        send(qtbot, workspace, "What is in this picture?")
    settle(qtbot, workspace)
    question = workspace.conversation.messages[-2]
    assert [(a.name, a.kind, a.tokens) for a in question.attachments] == [("cat.png", "image", tokens)]
    anchors = image_anchors(workspace.pane.view)
    assert [href for _name, href in anchors] == [f"act:image/{question.id}/0"]
    assert f"Attached image: cat.png · {tokens} tokens" in workspace.pane.view.toPlainText()
    kept = workspace.conversation.messages[-2].attachments[0].path
    qtbot.waitUntil(lambda: shared_thumbnails().decoded(kept) is not None, timeout=TIMEOUT_MS)   # off the UI thread
    thumbnail = workspace.pane.view.document().resource(3, anchors[0][0])   # QTextDocument.ImageResource
    assert thumbnail.pixelColor(0, 0) != placeholder(thumbnail.size()).pixelColor(0, 0), "the picture is in place"
    assert 0 < thumbnail.width() <= 240 and thumbnail.width() / thumbnail.height() == pytest.approx(400 / 240, 0.05)
    save_screenshot(qtbot, workspace, "message")

    click_link(workspace, "image", f"{question.id}/0")
    dialog = workspace.findChild(ImageDialog)
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.picture.pixmap() is not None and not dialog.picture.pixmap().isNull(),
                    timeout=TIMEOUT_MS)
    assert (dialog.picture.pixmap().width(), dialog.picture.pixmap().height()) == (400, 240)
    dialog.close()


def set_answer_length(workspace, tokens: int) -> None:
    workspace.pane.settings.max_tokens.setValue(tokens)
    workspace.pane.settings.flush()


def attach_image(qtbot, workspace, tmp_path) -> None:
    workspace.pane.files_given.emit([write_png(tmp_path / "cat.png", 64, 64)])
    qtbot.waitUntil(lambda: workspace.pane.tray.fit.text() != "", timeout=TIMEOUT_MS)


# An image of 576 tokens: more than a 1k context leaves beside the half of it the engine keeps for a long answer.
LARGE_IMAGES = TinyProjector(image_size=192)
TOO_LONG_IMAGE = (f"the image needs {LARGE_IMAGES.image_tokens} tokens, but only 448 of the 1k context are left after "
                  "the answer's 512 tokens — shorten the answer length or remove the image")


@pytest.fixture
def large_image_vision(tmp_path):
    return write_tiny_vision_model(tmp_path / "vision-large", LARGE_IMAGES)


def test_changing_the_answer_length_tells_the_images_fit_at_once(qtbot, workspace, session, large_image_vision,
                                                                 tmp_path):
    vision = large_image_vision
    load(qtbot, workspace, session, str(vision.model), projector_path_for_load(vision.model))   # answers of 4 tokens
    attach_image(qtbot, workspace, tmp_path)
    fit = workspace.pane.tray.fit
    assert fit.text() == "Fits the current 1k context"
    set_answer_length(workspace, 1024)
    qtbot.waitUntil(lambda: fit.text().startswith("Too long"), timeout=TIMEOUT_MS)
    set_answer_length(workspace, 4)
    qtbot.waitUntil(lambda: fit.text() == "Fits the current 1k context", timeout=TIMEOUT_MS)


def test_the_answer_length_counts_as_the_engine_keeps_it_at_most_half_the_context(qtbot, workspace, session, vision,
                                                                                 tmp_path):
    load(qtbot, workspace, session, str(vision.model), projector_path_for_load(vision.model))
    set_answer_length(workspace, 1024)          # all of the 1k context asked for, but the engine keeps half of it
    attach_image(qtbot, workspace, tmp_path)
    assert workspace.pane.tray.fit.text() == "Fits the current 1k context"


def test_an_image_that_does_not_fit_says_so_and_send_keeps_it(qtbot, workspace, session, large_image_vision,
                                                               tmp_path):
    vision = large_image_vision
    load(qtbot, workspace, session, str(vision.model), projector_path_for_load(vision.model))
    set_answer_length(workspace, 1024)
    attach_image(qtbot, workspace, tmp_path)
    tray = workspace.pane.tray
    assert tray.fit.text() == "Too long: " + TOO_LONG_IMAGE, "an image goes whole or not at all"
    notices = []
    workspace.notice.connect(lambda _level, sentence: notices.append(sentence))
    send(qtbot, workspace, "What is in this picture?")
    assert notices[-1] == f"Nothing was sent: {TOO_LONG_IMAGE}."
    assert workspace.conversation.messages == [] and not session.busy
    assert workspace.pane.composer.toPlainText() == "What is in this picture?"
    assert [chip.label.text().split(" · ")[0] for chip in tray.chips()] == ["cat.png"]
    assert workspace.pane.send_button.isEnabled()

    set_answer_length(workspace, 4)
    qtbot.waitUntil(lambda: tray.fit.text() == "Fits the current 1k context", timeout=TIMEOUT_MS)
    with qtbot.waitSignal(session.answer_finished, timeout=ANSWER_TIMEOUT_MS):
        workspace.pane.send_button.click()
    settle(qtbot, workspace)
    assert [a.name for a in workspace.conversation.messages[-2].attachments] == ["cat.png"]


def attach_long_text(qtbot, workspace, tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("\n\n".join(f"Note {n}: the lighthouse log of day {n} records calm water." for n in range(400)))
    workspace.pane.files_given.emit([text])
    qtbot.waitUntil(lambda: not workspace.attachments.reading and workspace.pane.tray.fit.text() != "",
                    timeout=TIMEOUT_MS)


def test_a_document_s_parts_go_in_the_room_the_image_beside_it_leaves(qtbot, workspace, session, vision, tmp_path,
                                                                     monkeypatch):
    from desktop.chat import pending_attachments

    rooms = []
    choose = pending_attachments._choose
    monkeypatch.setattr(pending_attachments, "_choose", lambda documents, question, room, *rest: (
        rooms.append(room), choose(documents, question, room, *rest))[1])
    load(qtbot, workspace, session, str(vision.model), projector_path_for_load(vision.model))   # 1k, answers of 4
    attach_image(qtbot, workspace, tmp_path)
    attach_long_text(qtbot, workspace, tmp_path)
    with qtbot.waitSignal(session.answer_finished, timeout=ANSWER_TIMEOUT_MS):
        send(qtbot, workspace, "What does the log say?")
    room_without_images = 1024 - 4 - pending_attachments.PROMPT_SLACK_TOKENS
    assert rooms == [room_without_images - TinyProjector().image_tokens]
    question = workspace.conversation.messages[-2]
    assert [a.kind for a in question.attachments] == ["document", "image"] and question.sources


def test_an_image_too_large_beside_a_document_sends_nothing_and_keeps_both(qtbot, workspace, session,
                                                                         large_image_vision, tmp_path):
    vision = large_image_vision
    load(qtbot, workspace, session, str(vision.model), projector_path_for_load(vision.model))
    set_answer_length(workspace, 1024)
    attach_image(qtbot, workspace, tmp_path)
    attach_long_text(qtbot, workspace, tmp_path)
    notices = []
    workspace.notice.connect(lambda _level, sentence: notices.append(sentence))
    send(qtbot, workspace, "What does the log say?")
    assert notices[-1] == f"Nothing was sent: {TOO_LONG_IMAGE}."
    assert workspace.conversation.messages == [] and workspace.pane.composer.toPlainText() == "What does the log say?"
    assert sorted(chip.label.text().split(" · ")[0] for chip in workspace.pane.tray.chips()) == ["cat.png", "notes.txt"]


def test_a_model_without_vision_says_so_in_the_tray(qtbot, workspace, session, vision, tmp_path):
    load(qtbot, workspace, session, str(vision.model), None)
    workspace.pane.files_given.emit([write_png(tmp_path / "cat.png")])
    tray = workspace.pane.tray
    assert tray.isVisible() and tray.chips() == []
    assert tray.refusal.isVisible()
    assert tray.refusal.text().startswith("cat.png was not attached: tiny-vision-Q8_0.gguf cannot look at images.")


def test_a_load_finds_the_projector_beside_a_model(vision, tmp_path):
    assert projector_path_for_load(vision.model) == str(vision.projector)
    assert projector_path_for_load(vision.projector) is None
    text_only = tmp_path / "text" / "tiny-Q8_0.gguf"
    text_only.parent.mkdir()
    text_only.write_bytes(vision.model.read_bytes())
    assert projector_path_for_load(text_only) is None


# --- the picker ---------------------------------------------------------------------------------------------------

@pytest.fixture
def vision_picker(qtbot, served, tmp_path, user_folder, fake_hub, vision):  # noqa: F811
    fake_hub.add_repo(REPO, {vision.model.name: vision.model.read_bytes(),
                             vision.projector.name: vision.projector.read_bytes()}, downloads=1000)
    widget = make_picker(qtbot, served, tmp_path, user_folder)
    yield widget
    widget.shutdown()


def test_the_picker_shows_a_vision_model_once_marked_and_downloads_its_projector(qtbot, vision_picker, vision):
    picker = vision_picker
    picker.show()
    picker.tabs.setCurrentWidget(picker.search)
    picker.search.query.setText("vision")
    picker.search.go.click()
    qtbot.waitUntil(lambda: picker.search.repos.rowCount() == 1, timeout=TIMEOUT_MS)
    picker.search.repos.selectRow(0)
    wait_checked(qtbot, picker.search)
    (row,) = picker.search.table.source.rows                   # the mmproj file is no row of its own
    assert row.filename == vision.model.name and row.projector.filename == vision.projector.name
    table = picker.search.table
    assert table.source.data(table.source.index(0, 0)) == f"{row.title} · vision"
    assert _shown_text(table, 0, 0).endswith(" · vision"), "the mark stays in view in a narrow column"
    assert badge_text(row) != "Unknown"
    assert picker.search.table.select_key(row.key)
    qtbot.waitUntil(lambda: "projector" in picker.details.heading.text(), timeout=TIMEOUT_MS)
    assert "and its image buffer, from its header" in picker.details.heading.text()
    save_screenshot(qtbot, picker, "picker")

    picker.details.download_button.click()
    qtbot.waitUntil(lambda: picker.search.table.source.row(row.key).on_disk, timeout=TIMEOUT_MS)
    projector = picker.queue.latest[(REPO, vision.projector.name)]
    qtbot.waitUntil(lambda: picker.queue.latest[(REPO, vision.projector.name)].state.value == "done",
                    timeout=TIMEOUT_MS)
    projector = picker.queue.latest[(REPO, vision.projector.name)]
    assert projector.path.read_bytes() == vision.projector.read_bytes()        # verified like any file
    assert projector.path.parent == picker.search.table.source.row(row.key).local.path.parent


def test_the_local_list_marks_a_vision_model_and_hides_its_projector(qtbot, vision_picker, user_folder):
    write_tiny_vision_model(user_folder)
    picker = vision_picker
    picker.show()
    picker.local.refresh_button.click()
    qtbot.waitUntil(lambda: any(r.filename == "tiny-vision-Q8_0.gguf" for r in picker.local.table.source.rows),
                    timeout=TIMEOUT_MS)
    wait_checked(qtbot, picker.local)
    names = [r.filename for r in picker.local.table.source.rows]
    assert "mmproj-tiny-vision-F32.gguf" not in names
    row = next(r for r in picker.local.table.source.rows if r.filename == "tiny-vision-Q8_0.gguf")
    assert row.sees_images and row.fit.plan is not None
    picker.tabs.setCurrentWidget(picker.local)
    assert picker.local.table.select_key(row.key)
    qtbot.waitUntil(lambda: "from its header" in picker.details.heading.text(), timeout=TIMEOUT_MS)
    save_screenshot(qtbot, picker, "local")
