"""Render the main screens in a real window (run under Xvfb by `make screenshots`) and save PNGs.

Each scene drives the app the way a user would, waits until the screen settles, then grabs the whole
screen, so what is saved is what a person would see:

    01 first start (no model)              06 the memory dashboard while a long answer streams
    02 a file that is not a GGUF           07 the settings dialog
    03 a chat with code (SmolLM2)          08 GPU offload and context: Llama 3.1 8B on "laptop-8gb"
    04 the model picker on first run       09 the dark theme with the chat of 03
    05 a download in progress in the picker
    11 a reasoning answer streaming: its thinking open above the answer, the Think and Effort controls (light)
    12 the same answer finished: "Thought for 14 s" closed, a tool call block, thinking/answer tokens (light)
    13, 14 the same two moments in the dark theme
    15 a 120-page PDF attached: its chip with the token count and the planner's sentence, before sending
    16 the answer with the parts of the PDF it was given listed as sources under it
    17 a source opened: the chunk's text with the file's name and page
    18 a picture attached for a vision model: its chip with the image's token count, before sending
    19 the question sent: its thumbnail in the message, and the model's (short) answer under it

04 and 05 are taken right after 01, before any model is loaded, as a first run shows them. SmolLM2 does not
think, so 11-14 show a reasoning model's answer as the engine reports one: its event values (ReasoningText,
ToolCallMade, TokenText, AnswerFinished) go through the window's real EngineSession while its engine lane is
held, then the engine answers the question itself (a few tokens, ignored: the chat has its answer).
`screenshots.py reasoning` takes only 11-14, `screenshots.py attachments` only 15-17, `screenshots.py vision`
only 18-19. The vision model of 18-19 is the tests' tiny one with random weights (tests/fixtures/tiny_vision.py):
the picture really goes through its projector, and its few words of answer mean nothing.

The picker talks only to the fake Hugging Face hub of the tests (tests/fixtures/fake_hub.py), run in a child
process and serving every catalog file as a header-only stub at its real size (bench/bench_catalog_fit.py), so
the fit badges are real plans; its body transfers are throttled so a download shows progress. HF_ENDPOINT,
HF_HOME, HF_HUB_CACHE and LLAMADESK_HOME point at a temporary folder, removed at the end: nothing touches the
network or the user's own folders. The picker plans for the "laptop-8gb" profile (an 8 GB GPU), so the badges
and the per-device bars show a GPU whatever machine renders the screenshots.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("LLAMADESK_SCREENSHOTS", ROOT / "screenshots"))
sys.path.insert(0, str(ROOT))

# Nothing heavy at import: the fake hub and the picker's fit-check workers are "spawn" processes, which import
# this module again before running their own work.

PICKER_PROFILE = "laptop-8gb"
OFFLOAD_MODEL = "llama3.1-8b"                       # tests/fixtures/model_zoo.py
PICKER_FILE = "Meta-Llama-3.1-8B-Instruct-Q8_0.gguf"      # selected in 04: partly on the 8 GB GPU
DOWNLOAD_FILE = "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"  # downloaded in 05 (4.9 GB)
THROTTLE_BYTES_PER_S = 48 << 20                    # the fake hub's speed for a whole-file transfer
THROTTLE_FROM_BYTES = 64 << 20                     # range reads of headers stay fast
CHART_HISTORY_S = 20.0                             # the window is up this long before the dashboard shot
STREAMED_TOKENS = 60                               # tokens streamed before the dashboard shot


# --- the fake hub, in its own process ------------------------------------------------------------------------------
def fill_hub(server, rate: int, from_bytes: int) -> None:
    """In the hub's process: the whole catalog (bench_catalog_fit's stubs), whole-file transfers at ``rate``."""
    from core.models.catalog import load_catalog

    server.set_link_speed(rate, from_bytes=from_bytes)
    serve_catalog_by_quant(server, load_catalog(use_refresh_cache=False))


def serve_catalog_by_quant(server, catalog) -> None:
    """bench_catalog_fit.serve_catalog, with each file's stub at the quant its name says: there every quant gets the
    zoo's Q4_K_M mix (the bench measures time), which would show a 8.5 GB Q8_0 "fully on GPU" on an 8 GB card."""
    from bench.bench_catalog_fit import _shapes, _split_stub, _stub
    from tests.conftest import smollm2_path
    from tests.fixtures.fake_hub import FakeFile

    shapes = _shapes()
    smol = smollm2_path().read_bytes()
    for model in catalog.models:
        spec = shapes.get(model.id)
        files = {}
        for f in model.files:
            if spec is None:  # the SmolLM2 135M rows: the real file
                files[f.filename] = FakeFile.real(smol)
                continue
            variant = _at_quant(spec, f.quant)
            if len(f.all_parts) > 1:
                for name, (header, size) in zip(f.all_parts, _split_stub(variant, len(f.all_parts))):
                    files[name] = FakeFile.virtual(header, size)
            else:
                files[f.filename] = FakeFile.virtual(*_stub(variant))
        server.add_repo(model.repo_id, files, gated=False)


def _at_quant(spec, quant: str):
    """The zoo model with its Q4_K_M-style tensor mix moved to ``quant`` (stubs are cached under the new name)."""
    from dataclasses import replace

    from gguf import GGMLQuantizationType as T

    from tests.fixtures.model_zoo import _fit_type

    quantised = (T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_0)
    moves = {"Q5_K_M": {T.Q4_K: T.Q5_K}, "Q6_K": {T.Q4_K: T.Q6_K, T.Q5_K: T.Q6_K},
             "Q8_0": dict.fromkeys(quantised, T.Q8_0), "F16": dict.fromkeys(quantised, T.F16),
             "BF16": dict.fromkeys(quantised, T.BF16)}.get((quant or "").upper())
    if not moves:
        return spec

    def tensors(_model):
        return [(name, shape, _fit_type(moves.get(kind, kind), shape[0])) for name, shape, kind in spec.tensors(spec)]

    return replace(spec, name=f"{spec.name}-{quant.upper()}", tensors=tensors)


# --- driving the window ----------------------------------------------------------------------------------------------
def settle(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def wait_until(condition, timeout: float = 60.0, what: str = "the expected state") -> None:
    from PySide6.QtCore import QCoreApplication, QEventLoop

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the screen did not reach {what} within {timeout:.0f} s")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.02)


def send_and_wait(chat, session) -> None:
    """Press Send and wait until the answer is finished and stored."""
    finished = []
    session.answer_finished.connect(finished.append)
    chat.pane.send_button.click()
    wait_until(lambda: finished and not chat.answers.running, 120, "the answer finished")


def shoot(app, name: str, settle_s: float = 1.2) -> Path:
    settle(settle_s)  # let the memory strip take a sample and the window paint
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    app.primaryScreen().grabWindow(0).save(str(path))
    print(f"saved {path}", flush=True)
    return path


def visible(widget_type, parent):
    return next((w for w in parent.findChildren(widget_type) if w.isVisible()), None)


# --- scenes ----------------------------------------------------------------------------------------------------------
def first_start(app, window) -> None:
    shoot(app, "01-first-start-no-model")


def bad_file_and_chat(app, window, model: Path) -> None:
    bad = Path(os.environ["LLAMADESK_HOME"]) / "holiday-photos.gguf"
    bad.write_text("not a model")
    window.open_model(str(bad))
    wait_until(window.notice.isVisible, what="the notice about the bad file")
    shoot(app, "02-not-a-gguf-file")

    finished = []
    window.session.answer_finished.connect(finished.append)
    window.open_model(str(model))
    pane = window.chat.pane
    wait_until(lambda: pane.send_button.isEnabled(), what="the model loaded")
    pane.composer.setPlainText("Write a short Python function that reverses a string, with an example.")
    pane.send_button.click()
    wait_until(lambda: finished, 120, "the answer finished")
    pane.composer.setPlainText("Now explain it in one sentence.")
    shoot(app, "03-chat-with-smollm2")


def picker_scenes(app, window) -> None:
    from core.models.downloads.manager import DownloadState
    from core.machine.hardware import load_profile

    # The window's own picker (Ctrl+K, or the first run with no model), planned for an 8 GB laptop GPU.
    window._picker_dialog = window._make_picker_dialog()
    picker = window.picker
    picker.hardware = load_profile(PICKER_PROFILE)
    window._picker_dialog.move(60, 40)
    window.show_model_picker(first_run=True)
    tab = picker.recommended
    rows = tab.table.source

    def badges_done() -> bool:
        return bool(rows.rows) and not tab.checker.running and all(r.fit is not None for r in rows.rows)

    wait_until(badges_done, 120, "every fit badge filled in")
    verdicts: dict[str, int] = {}
    for row in rows.rows:
        word = row.fit.badge.split(":")[0] if row.fit.plan else f"not planned ({row.fit.error})"
        verdicts[word] = verdicts.get(word, 0) + 1
    print("  fit badges: " + " · ".join(f"{count} {word}" for word, count in verdicts.items()), flush=True)

    def select(filename: str, badge_word: str = ""):
        shown = tab.table.visible_rows()
        row = next((r for r in shown if filename in r.key and badge_word in r.fit.badge), None)
        row = row or next((r for r in shown if badge_word in r.fit.badge), shown[0])
        tab.table.select_key(row.key)
        tab.table.scrollTo(tab.table.currentIndex())
        wait_until(lambda: picker.details.shown is not None and picker.details.shown.key == row.key
                   and picker.details.sections, 30, f"the details of {row.key}")
        return row

    select(PICKER_FILE, "Partial")  # a file partly on the GPU: both bars of the details pane have a share
    shoot(app, "04-model-picker-first-run-fit-badges")
    size = window._picker_dialog.size()
    window._picker_dialog.resize(880, 700)  # a small laptop screen: every column must still say something
    shoot(app, "10-model-picker-narrow-window")
    window._picker_dialog.resize(size)

    row = select(DOWNLOAD_FILE)
    picker.details.download_button.click()
    started = time.monotonic()

    def progressing() -> bool:
        found = [p for p in picker.queue.row_progress(row) if p.state == DownloadState.DOWNLOADING]
        return bool(found) and (found[0].bytes_done >= 0.12 * (found[0].total_bytes or 1)
                                or time.monotonic() - started > 12)

    wait_until(progressing, 40, "the download under way")
    shoot(app, "05-model-picker-download-in-progress", settle_s=0.6)
    for progress in picker.queue.row_progress(row):
        picker.queue.pause(progress.job_id)  # its bytes stay until the temporary folder goes
    window._picker_dialog.hide()


def dashboard_during_generation(app, window, shown_at: float) -> None:
    chat = window.chat
    before = chat.conversation
    chat.new_conversation()
    wait_until(lambda: chat.conversation is not None and chat.conversation is not before
               and not chat.conversation.messages, what="a new chat")
    tokens = []
    window.session.token_arrived.connect(tokens.append)
    settle(max(0.0, CHART_HISTORY_S - (time.monotonic() - shown_at)))  # the charts have points to show
    pane = chat.pane
    wait_until(lambda: pane.send_button.isEnabled(), what="the model ready")
    pane.composer.setPlainText("Write a long story about a lighthouse keeper who finds a message in a bottle during "
                               "a winter storm. Describe the sea, the lighthouse and the people of the village.")
    pane.send_button.click()
    sent = time.monotonic()
    wait_until(lambda: len(tokens) >= STREAMED_TOKENS or not window.session.busy and tokens, 120,
               "a long answer streaming")
    print(f"  {len(tokens)} tokens shown {time.monotonic() - sent:.1f} s after Send; "
          f"{'still generating' if window.session.busy else 'the answer had finished'}", flush=True)
    shoot(app, "06-memory-dashboard-during-generation", settle_s=0.3)
    if window.session.busy:
        pane.stop_button.click()
    wait_until(lambda: not window.session.busy, 60, "the answer stopped")


def settings_dialog(app, window) -> None:
    from desktop.settings.settings_dialog import SettingsDialog

    window.show_settings_dialog()
    wait_until(lambda: visible(SettingsDialog, window) is not None, what="the settings dialog")
    dialog = visible(SettingsDialog, window)
    shoot(app, "07-settings")
    dialog.reject()


def offload_dialog(app, window) -> None:
    from core.gguf.reader import read_model_info
    from core.machine.hardware import load_profile
    from core.fit.choice import choice_from_settings, plan_choice
    from desktop.models.offload_panel import OffloadDialog
    from tests.fixtures.model_zoo import zoo_model

    info = read_model_info(zoo_model(OFFLOAD_MODEL))
    laptop = load_profile(PICKER_PROFILE)
    margin = window.settings.safety_margin_bytes
    # The default context first; a longer one when the whole model fits on the GPU, so the dialog shows a
    # partial offload (the slider and both bars have something to say).
    for context in (None, 16384, 32768, 65536):
        choice = choice_from_settings(window.settings, context)
        plan = plan_choice(info, laptop, choice, margin)
        if 0 < plan.n_gpu_layers < plan.n_layers:
            break
    dialog = OffloadDialog(window)
    dialog.move(380, 60)
    dialog.show_for(info, laptop, choice, margin)
    wait_until(lambda: dialog.panel.plan is not None and dialog.panel.sections, 30, "the offload plan")
    shoot(app, "08-gpu-offload-and-context-laptop-8gb")
    dialog.reject()
    dialog.deleteLater()


REASONING_QUESTION = "Is it warmer in Oslo or in Bergen today? Check the weather first."
REASONING = ("The user wants to compare today's temperature in Oslo and Bergen. I do not know today's weather, so "
             "I should call the weather tool for both cities rather than guess.\n\nOslo is inland and Bergen is on "
             "the coast, so in winter Bergen is usually milder, but I will check the actual figures.")
REASONING_ANSWER = ("**Bergen** is warmer today: 6 °C against −3 °C in Oslo.\n\nBergen lies on the coast, where "
                    "the sea keeps winters mild; Oslo is further inland and colder.")


def reasoning_answer(app, window, look: str) -> None:
    """A reasoning model's answer, while it thinks (open) and finished (closed), in `look`."""
    import threading

    from core.engine.protocol import AnswerFinished, AnswerStats, ThinkingSupport, ToolCall
    from desktop.tasks import Task
    from desktop.theme import apply_theme

    chat, session = window.chat, window.session
    apply_theme(app, look)
    before = chat.conversation
    chat.new_conversation()
    wait_until(lambda: chat.conversation is not None and chat.conversation is not before
               and not chat.conversation.messages, what="a new chat")
    chat.pane.settings.max_tokens.setValue(8)
    wait_until(lambda: chat.pane.send_button.isEnabled() and not session.busy, 60, "the model ready")
    # What a reasoning model's template offers (SmolLM2's offers nothing, so its controls are hidden).
    chat.pane.thinking.show_support(ThinkingSupport("harmony", can_toggle=True, efforts=("low", "medium", "high")))
    release = threading.Event()
    Task(release.wait, 60).run_in_background(serial=True)   # the engine answers only after this scene
    try:
        chat.pane.composer.setPlainText(REASONING_QUESTION)
        chat.pane.send_button.click()
        wait_until(lambda: chat.answers.active is not None, what="the answer begun")
        for word in REASONING.split(" "):
            session.reasoning_arrived.emit(word + " ")
            settle(0.01)
        shoot(app, f"{11 if look == 'light' else 13}-reasoning-streaming-{look}", settle_s=0.6)
        call = ToolCall("call-1", "get_weather", '{"cities": ["Oslo", "Bergen"], "unit": "celsius"}')
        session.tool_called.emit(call)
        session.token_arrived.emit(REASONING_ANSWER)
        stats = AnswerStats(prompt_tokens=212, completion_tokens=138, ttft_seconds=0.21, prompt_tokens_per_second=850.0,
                            tokens_per_second=41.5, context_used=350, context_size=8192, stop_reason="stop",
                            reused_prefix_tokens=0, dropped_messages=0, reasoning_tokens=96, reasoning_seconds=14.2)
        session.answer_finished.emit(AnswerFinished(REASONING_ANSWER, stats, REASONING.strip() + " ", (call,)))
        wait_until(lambda: not chat.answers.running, what="the answer finished")
        shoot(app, f"{12 if look == 'light' else 14}-reasoning-finished-{look}")
    finally:
        release.set()
    wait_until(lambda: not session.busy, 60, "the engine's own answer done")
    chat.pane.thinking.show_support(session.model.thinking if session.model else None)   # SmolLM2's own again
    apply_theme(app, "light")


def attached_document(app, window) -> None:
    """A long PDF attached (chip, tokens, fit sentence), the answer's sources, one source opened."""
    from tests.unit.test_attachments import PLANTED, filler_page, pdf_with_pages
    from desktop.chat.source_dialog import SourceDialog

    chat, session = window.chat, window.session
    before = chat.conversation
    chat.new_conversation()
    wait_until(lambda: chat.conversation is not None and chat.conversation is not before, what="a new chat")
    chat.pane.settings.max_tokens.setValue(48)
    wait_until(lambda: chat.pane.send_button.isEnabled() and not session.busy, 60, "the model ready")
    pages = [filler_page(n) for n in range(1, 121)]
    pages[86] += " " + PLANTED
    pdf = pdf_with_pages(Path(os.environ["LLAMADESK_HOME"]) / "harbour-logbook.pdf", pages)
    chat.pane.files_given.emit([pdf])
    wait_until(lambda: not chat.attachments.reading and chat.pane.tray.fit.text(), 60, "the document read")
    chat.pane.composer.setPlainText("Which combination opens the vault under the old lighthouse?")
    shoot(app, "15-attachment-long-pdf-fit")
    send_and_wait(chat, session)
    shoot(app, "16-attachment-sources-under-answer")
    answer = chat.conversation.messages[-1]
    sources = chat.conversation.message(answer.parent_id).sources
    number = next((i for i, s in enumerate(sources) if "Quokka" in s.text), 0)
    chat._message_action("source", f"{answer.id}/{number}")
    dialog = chat.findChild(SourceDialog)
    wait_until(lambda: dialog is not None and dialog.isVisible(), what="the source dialog")
    shoot(app, "17-attachment-source-opened")
    dialog.close()


def draw_landscape(path: Path, width: int = 960, height: int = 640) -> Path:
    """A picture to attach: sky, sun, two mountains, a lake and a few trees."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QBrush, QColor, QImage, QLinearGradient, QPainter, QPolygonF

    image = QImage(width, height, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    sky = QLinearGradient(0, 0, 0, height * 0.6)
    sky.setColorAt(0, QColor("#3b7dd8"))
    sky.setColorAt(1, QColor("#f6c89a"))
    painter.fillRect(image.rect(), QBrush(sky))
    painter.setBrush(QColor("#ffd34d"))
    painter.drawEllipse(QPointF(width * 0.72, height * 0.24), height * 0.08, height * 0.08)
    for peak_x, peak_y, colour in ((0.3, 0.18, "#5d6b7a"), (0.62, 0.3, "#4a5866")):
        painter.setBrush(QColor(colour))
        painter.drawPolygon(QPolygonF([QPointF(width * (peak_x - 0.42), height * 0.62),
                                       QPointF(width * peak_x, height * peak_y),
                                       QPointF(width * (peak_x + 0.42), height * 0.62)]))
        painter.setBrush(QColor("#f4f6f8"))                      # snow on the summit
        painter.drawPolygon(QPolygonF([QPointF(width * (peak_x - 0.07), height * (peak_y + 0.08)),
                                       QPointF(width * peak_x, height * peak_y),
                                       QPointF(width * (peak_x + 0.07), height * (peak_y + 0.08))]))
    painter.fillRect(0, int(height * 0.6), width, height, QColor("#4f9a4a"))
    painter.setBrush(QColor("#2f6fb0"))
    painter.drawEllipse(QPointF(width * 0.55, height * 0.8), width * 0.28, height * 0.09)
    for tree_x in (0.08, 0.15, 0.86, 0.93):
        painter.setBrush(QColor("#6b4a2b"))
        painter.drawRect(int(width * tree_x) - 6, int(height * 0.74), 12, int(height * 0.08))
        painter.setBrush(QColor("#1f5e2e"))
        painter.drawPolygon(QPolygonF([QPointF(width * tree_x - 40, height * 0.76),
                                       QPointF(width * tree_x, height * 0.55),
                                       QPointF(width * tree_x + 40, height * 0.76)]))
    painter.end()
    image.save(str(path))
    return path


def write_vision_model(folder: Path) -> Path:
    """The tests' tiny vision model and its projector, side by side (paired as a download pairs them). A 4k context,
    as real vision models have at least; weight seed 20 answers this scene's question with plain letters where most
    seeds give bytes that are not text (the weights are random: no answer means anything)."""
    from tests.fixtures.tiny_gguf import write_tiny_model
    from tests.fixtures.tiny_vision import TinyProjector, write_tiny_projector

    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_projector(folder / "mmproj-tiny-vision-F32.gguf")
    return write_tiny_model(folder / "tiny-vision-Q8_0.gguf", n_embd=TinyProjector().text_n_embd,
                            context_length=4096, name="tiny-vision-model", seed=20)


def image_in_chat(app, window) -> None:
    """A picture attached for the tiny vision model (chip with its tokens), then sent and answered."""
    from desktop.chat.thumbnails import shared_thumbnails

    home = Path(os.environ["LLAMADESK_HOME"])
    model = write_vision_model(home / "vision")
    chat, session = window.chat, window.session
    window.open_model(str(model))
    wait_until(lambda: session.model is not None and session.model.settings.model_path == str(model)
               and chat.pane.send_button.isEnabled() and not session.busy, 120, "the vision model loaded")
    chat.new_conversation()
    wait_until(lambda: chat.conversation is not None and not chat.conversation.messages, what="an empty chat")
    chat.pane.settings.max_tokens.setValue(6)
    chat.pane.settings.temperature.setValue(0.0)        # the same answer on every run
    chat.pane.settings.flush()
    chat.pane.files_given.emit([draw_landscape(home / "lake-in-the-mountains.png")])
    tray = chat.pane.tray
    wait_until(lambda: any("tokens" in c.label.text() for c in tray.chips()) and tray.fit.text(), 60,
               "the image counted and its fit told")
    chat.pane.composer.setPlainText("What is in this picture?")
    shoot(app, "18-image-attached-token-count")
    send_and_wait(chat, session)
    kept = chat.conversation.messages[-2].attachments[0].path
    wait_until(lambda: shared_thumbnails().decoded(kept) is not None, 30, "the thumbnail decoded")
    shoot(app, "19-image-in-chat")


def dark_theme(app, window, chat_with_code_id: str) -> None:
    from desktop.theme import apply_theme

    conversations = window.chat.conversations
    conversations.list.setCurrentRow(conversations.row_of(chat_with_code_id))
    wait_until(lambda: window.chat.conversation is not None and window.chat.conversation.id == chat_with_code_id,
               what="the chat with code")
    apply_theme(app, "dark")
    shoot(app, "09-dark-theme-chat", settle_s=1.5)
    apply_theme(app, "light")


def main() -> int:
    only = sys.argv[1] if sys.argv[1:] in (["reasoning"], ["attachments"], ["vision"]) else None
    work = Path(tempfile.mkdtemp(prefix="llamadesk-screens-"))
    os.environ["LLAMADESK_HOME"] = str(work / "home")  # chats, settings, header cache, downloads list
    started = time.monotonic()
    model = Path(os.environ["LLAMADESK_TEST_MODEL"])
    from tests.fixtures.fake_hub import HubProcess, point_huggingface_hub_at

    with HubProcess(fill_hub, THROTTLE_BYTES_PER_S, THROTTLE_FROM_BYTES, lower_priority=False) as hub:
        point_huggingface_hub_at(hub.url, str(work / "hf"))  # here and in every child started later
        try:
            shoot_all(model, only)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def shoot_all(model: Path, only: str | None = None) -> None:
    window = None
    try:
        from core.settings import Settings
        from desktop.app import create_application

        app = create_application([sys.argv[0]])
        from desktop.main_window import MainWindow

        window = MainWindow(Settings(threads=2))
        window.resize(1340, 840)
        window.move(20, 20)
        window.show()
        shown_at = time.monotonic()
        wait_until(lambda: window.chat is not None, what="the chat workspace")
        if only == "reasoning":
            window.open_model(str(model))
            for look in ("light", "dark"):
                reasoning_answer(app, window, look)
            return
        if only == "attachments":
            window.open_model(str(model))
            attached_document(app, window)
            return
        if only == "vision":
            image_in_chat(app, window)
            return
        first_start(app, window)
        picker_scenes(app, window)  # as on a first run: no model loaded yet (the file names keep their order)
        bad_file_and_chat(app, window, model)
        chat_with_code = window.chat.conversation.id
        dashboard_during_generation(app, window, shown_at)
        settings_dialog(app, window)
        offload_dialog(app, window)
        dark_theme(app, window, chat_with_code)
        for look in ("light", "dark"):
            reasoning_answer(app, window, look)
        attached_document(app, window)
        image_in_chat(app, window)
    finally:
        if window is not None:
            window.close()  # stops the engine, pauses the download, stops the picker's workers


if __name__ == "__main__":
    sys.exit(main())
