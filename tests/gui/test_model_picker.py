"""The model picker (offscreen) against the fake hub: badges from remote headers before any download, the fits
filter, the details pane re-planning, downloads (verified, failing), search, the library and delete."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QComboBox, QLineEdit, QMessageBox, QScrollArea,
                               QSlider, QSpinBox, QTableView)

from core.models.downloads.manager import DownloadManager, RetryPolicy
from core.gguf.reader import read_model_info
from core.machine.hardware import load_profile
from core.models.library import LibrarySources
from desktop.models.picker import ModelPicker
from desktop.models.picker.badges import badge_text
from tests.fixtures.fake_hub import FakeFile, Fault, fake_hub  # noqa: F401  (fixture)
from tests.fixtures.model_zoo import zoo_model
from tests.fixtures.tiny_gguf import write_tiny_model

TIMEOUT_MS = 20000
TINY = ("tester/Tiny-GGUF", "tiny-F32.gguf")
LLAMA = ("tester/Llama-3.1-8B-GGUF", "Llama-3.1-8B-Q4_K_M.gguf")
MIXTRAL = ("tester/Mixtral-8x7B-GGUF", "Mixtral-8x7B-Q4_K_M.gguf")
GATED = ("tester/Gated-GGUF", "gated-F32.gguf")
GPT_OSS = ("tester/gpt-oss-20b-GGUF", "gpt-oss-20b-Q4_K_M.gguf")
FAST_RETRY = RetryPolicy(stall_seconds=1.0, max_retries=1, first_backoff=0.01, max_backoff=0.05)


def _virtual(name: str) -> FakeFile:
    path = zoo_model(name)
    offset = read_model_info(path).tensor_data_offset
    with open(path, "rb") as handle:
        return FakeFile.virtual(handle.read(offset), path.stat().st_size)


def key(repo_file) -> str:
    return f"catalog:{repo_file[0]}/{repo_file[1]}"


@pytest.fixture
def served(fake_hub, tmp_path):  # noqa: F811
    """The fake hub with a tiny real model, Llama 3.1 8B and Mixtral (header-only), and a catalog naming them."""
    tiny = write_tiny_model(tmp_path / "tiny.gguf").read_bytes()
    files = {TINY: tiny, LLAMA: _virtual("llama3.1-8b"), MIXTRAL: _virtual("mixtral-8x7b"), GATED: tiny}
    return catalog_of(fake_hub, tmp_path, files)


def catalog_of(fake_hub, tmp_path, files: dict) -> Path:  # noqa: F811
    """A catalog naming `files` ((repo, file) -> bytes or FakeFile), each served by the fake hub."""
    models = []
    for i, ((repo, name), content) in enumerate(files.items()):
        fake_hub.add_repo(repo, {name: content}, gated=(repo, name) == GATED, downloads=100 - i, likes=i)
        size = content.size if isinstance(content, FakeFile) else len(content)
        models.append({"id": f"m{i}", "name": repo.split("/")[1].removesuffix("-GGUF"), "family": "Test",
                       "parameters": "?", "repo": repo, "license": "mit", "description": "d",
                       "files": [{"file": name, "approx_size": size}]})
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"schema": 1, "updated": "test", "models": models}))
    return path


@pytest.fixture
def user_folder(tmp_path):
    folder = tmp_path / "my-models"
    folder.mkdir()
    return folder


def make_picker(qtbot, catalog, tmp_path, user_folder) -> ModelPicker:
    manager = DownloadManager(state_file=tmp_path / "downloads.json", policy=FAST_RETRY, progress_interval=0.05)
    sources = LibrarySources(app_dir=tmp_path / "app-models", lmstudio_dirs=(), ollama_dir=tmp_path / "ollama",
                             user_dirs=(user_folder,))
    widget = ModelPicker(hardware=load_profile("laptop-8gb"), downloads=manager, library_sources=sources,
                         catalog_path=catalog, refresh_catalog=False, debounce_ms=5)
    qtbot.addWidget(widget)
    widget.resize(1200, 760)
    return widget


@pytest.fixture
def picker(qtbot, served, tmp_path, user_folder):
    widget = make_picker(qtbot, served, tmp_path, user_folder)
    yield widget
    widget.shutdown()


def wait_checked(qtbot, tab) -> None:
    qtbot.waitUntil(lambda: bool(tab.table.source.rows) and not tab.checker.running
                    and all(row.fit is not None for row in tab.table.source.rows), timeout=TIMEOUT_MS)


def shown(qtbot, picker, row_key, *, planned=True):
    picker.show()
    wait_checked(qtbot, picker.recommended)
    assert picker.recommended.table.select_key(row_key)
    if planned:
        qtbot.waitUntil(lambda: picker.details.shown is not None and picker.details.shown.key == row_key,
                        timeout=TIMEOUT_MS)
    return picker.details.shown


def test_recommended_fills_with_badges_from_remote_headers_without_downloading(qtbot, picker, fake_hub):  # noqa: F811
    picker.show()
    wait_checked(qtbot, picker.recommended)
    badges = {row.key: badge_text(row) for row in picker.recommended.table.source.rows}
    assert badges[key(TINY)] == "Runs fully on GPU"
    assert badges[key(LLAMA)] == "Runs fully on GPU"
    assert badges[key(MIXTRAL)] == "Too large"
    llama = picker.recommended.table.source.row(key(LLAMA))
    assert llama.fit.tokens_per_second > 0
    gated = picker.recommended.table.source.row(key(GATED))
    assert gated.fit.plan is None and "gated" in gated.fit.error
    cdn_gets = [r for r in fake_hub.requests if r.method == "GET" and r.path.startswith("/cdn/")]
    assert cdn_gets and all(r.range and r.range.startswith("bytes=") and not r.range.endswith("-")
                            for r in cdn_gets), "only header ranges are read, never whole files"


def test_the_fits_filter_hides_too_large_rows_and_is_on_at_first_run(qtbot, picker):
    picker.open_on_first_run()
    picker.show()
    wait_checked(qtbot, picker.recommended)
    assert picker.tabs.currentWidget() is picker.recommended and picker.fits_only.isChecked()
    visible = {row.key for row in picker.recommended.table.visible_rows()}
    assert key(MIXTRAL) not in visible and {key(TINY), key(LLAMA)} <= visible
    assert "hidden because they do not fit" in picker.recommended.status.text()
    picker.fits_only.setChecked(False)
    assert key(MIXTRAL) in {row.key for row in picker.recommended.table.visible_rows()}


def test_context_and_kv_type_change_the_verdict(qtbot, picker):
    first = shown(qtbot, picker, key(LLAMA))
    assert first.plan.verdict == "Runs fully on GPU"
    assert len(picker.details.sections) == 2, "a bar for the GPU and one for the host"
    with qtbot.waitSignal(picker.details.planned, timeout=TIMEOUT_MS) as long_context:
        picker.details.context_spin.setValue(65536)
    longer = long_context.args[0].plan
    assert longer.verdict != first.plan.verdict
    assert picker.details.verdict.text() == longer.verdict
    with qtbot.waitSignal(picker.details.planned, timeout=TIMEOUT_MS) as smaller_kv:
        picker.details.kv_combo.setCurrentIndex(picker.details.kv_combo.findData("q4_0"))
    quantized = smaller_kv.args[0].plan
    assert quantized.kv_type == "q4_0"
    assert sum(d.kv_bytes for d in quantized.devices) < sum(d.kv_bytes for d in longer.devices)
    assert quantized.verdict != longer.verdict or quantized.n_gpu_layers > longer.n_gpu_layers


def test_the_details_say_where_the_layers_go_when_the_file_fits(qtbot, picker):
    llama = shown(qtbot, picker, key(LLAMA))
    assert picker.details.placement.isVisible()
    assert picker.details.placement.text() == llama.plan.placement
    assert llama.plan.placement.startswith("All layers on GPU")
    picker.fits_only.setChecked(False)
    mixtral = shown(qtbot, picker, key(MIXTRAL))
    assert not mixtral.plan.fits and not picker.details.placement.isVisible()


def test_the_details_of_a_moe_file_say_which_experts_stay_on_the_cpu(qtbot, fake_hub, tmp_path,  # noqa: F811
                                                                      user_folder):
    catalog = catalog_of(fake_hub, tmp_path, {GPT_OSS: _virtual("gpt-oss-20b")})
    picker = make_picker(qtbot, catalog, tmp_path, user_folder)
    try:
        plan = shown(qtbot, picker, key(GPT_OSS)).plan
        assert 0 < plan.cpu_expert_layers < 24
        expected = f"Experts of {plan.cpu_expert_layers} of 24 layers on the CPU"
        assert picker.details.placement.text().startswith(expected)
    finally:
        picker.shutdown()


def test_download_then_the_verified_file_is_on_this_computer_and_loads(qtbot, picker, tmp_path):
    shown(qtbot, picker, key(TINY))
    assert not picker.details.load_button.isEnabled()
    picker.details.download_button.click()
    qtbot.waitUntil(lambda: picker.recommended.table.source.row(key(TINY)).on_disk, timeout=TIMEOUT_MS)
    assert any(row.local is not None and row.local.source == "huggingface"
               for row in picker.local.table.source.rows)
    entry = next(iter(picker.downloads.entries.values()))
    assert "verified" in entry.status.text() and entry.bar.value() == entry.bar.maximum()
    qtbot.waitUntil(picker.details.load_button.isEnabled, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(picker.load_requested, timeout=TIMEOUT_MS) as load:
        picker.details.load_button.click()
    assert open(load.args[0], "rb").read() == (tmp_path / "tiny.gguf").read_bytes()


def test_a_checksum_mismatch_shows_the_sentence_and_never_offers_load(qtbot, picker, fake_hub):  # noqa: F811
    shown(qtbot, picker, key(TINY))
    fake_hub.add_fault(*TINY, Fault(corrupt=True))  # after the header was read: the download gets wrong bytes
    with qtbot.waitSignal(picker.notice, timeout=TIMEOUT_MS,
                          check_params_cb=lambda level, sentence: level == "error") as notice:
        picker.details.download_button.click()
    assert "did not match the hub's SHA-256" in notice.args[1]
    entry = next(iter(picker.downloads.entries.values()))
    assert "SHA-256" in entry.status.text() and entry.resume_button.text() == "Retry"
    qtbot.wait(500)  # a library rescan, if any, has had time to run
    assert not picker.recommended.table.source.row(key(TINY)).on_disk
    assert not picker.details.load_button.isEnabled()
    assert picker.details.download_button.isEnabled(), "the user can try again"


def test_a_gated_repository_says_to_log_in(qtbot, picker):
    shown(qtbot, picker, key(GATED), planned=False)
    qtbot.waitUntil(lambda: "gated" in picker.details.verdict.text(), timeout=TIMEOUT_MS)  # no header either
    with qtbot.waitSignal(picker.notice, timeout=TIMEOUT_MS,
                          check_params_cb=lambda level, sentence: level == "error") as notice:
        picker.details.download_button.click()
    assert "gated" in notice.args[1] and "log in" in notice.args[1]


def test_search_shows_repositories_then_their_files_with_badges(qtbot, picker):
    picker.show()
    picker.tabs.setCurrentWidget(picker.search)
    picker.search.query.setText("llama")
    picker.search.go.click()
    qtbot.waitUntil(lambda: picker.search.repos.rowCount() == 1, timeout=TIMEOUT_MS)
    assert picker.search.repos.item(0, 0).text() == LLAMA[0]
    picker.search.repos.selectRow(0)
    wait_checked(qtbot, picker.search)
    (row,) = picker.search.table.source.rows
    assert row.filename == LLAMA[1] and badge_text(row) == "Runs fully on GPU"


def test_delete_asks_for_confirmation_first(qtbot, picker, user_folder, monkeypatch):
    model = write_tiny_model(user_folder / "mine.gguf")
    picker.show()
    picker.tabs.setCurrentWidget(picker.local)
    qtbot.waitUntil(lambda: len(picker.local.table.source.rows) == 1, timeout=TIMEOUT_MS)
    questions = []
    answer = QMessageBox.StandardButton.Cancel
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: questions.append(args[2]) or answer)
    assert picker.local.table.select_key(picker.local.table.source.rows[0].key)
    picker.local.delete_button.click()
    assert "mine.gguf" in questions[0] and model.exists()
    answer = QMessageBox.StandardButton.Yes
    picker.local.delete_button.click()
    qtbot.waitUntil(lambda: not picker.local.table.source.rows, timeout=TIMEOUT_MS)
    assert not model.exists()


def test_every_control_has_an_accessible_name(qtbot, picker):
    picker.show()
    wait_checked(qtbot, picker.recommended)
    picker.recommended.table.select_key(key(TINY))
    controls = [w for kind in (QAbstractButton, QComboBox, QLineEdit, QSpinBox, QSlider, QAbstractItemView)
                for w in picker.findChildren(kind)
                if w.isVisibleTo(picker) and not isinstance(w.parent(), (QLineEdit, QTableView, QSpinBox))]
    assert controls
    unnamed = [f"{type(w).__name__} {w.objectName()!r}" for w in controls if not w.accessibleName()]
    assert not unnamed


@pytest.mark.model
def test_exact_figures_come_from_llama_cpps_dry_run_on_the_header(qtbot, picker):
    shown(qtbot, picker, key(TINY))
    picker.details.exact_button.click()
    qtbot.waitUntil(lambda: "dry run (exact)" in picker.details.exact.text()
                    or "failed" in picker.details.exact.text(), timeout=60000)
    assert "Host RAM" in picker.details.exact.text(), picker.details.exact.text()


@pytest.mark.parametrize("verdict, badge", [
    ("Runs fully on GPU", "Runs fully on GPU"), ("Partial: 28 of 33 layers on GPU", "Partial 28/33 on GPU"),
    ("CPU only", "CPU only"), ("Too large for this machine", "Too large")])
def test_badges_are_short_words_not_only_colours(verdict, badge):
    from desktop.models.picker.badges import short_verdict

    assert short_verdict(verdict) == badge


def test_searching_offline_says_so_in_a_sentence(qtbot, picker, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    picker.show()
    picker.tabs.setCurrentWidget(picker.search)
    picker.search.query.setText("llama")
    with qtbot.waitSignal(picker.notice, timeout=TIMEOUT_MS) as notice:
        picker.search.go.click()
    assert notice.args[0] == "error" and "offline mode is on" in notice.args[1]
    assert picker.search.status.text() == notice.args[1]


def test_the_catalog_is_refreshed_from_the_hub_and_keeps_the_badges(qtbot, served, tmp_path):
    sources = LibrarySources(app_dir=tmp_path / "app-models", lmstudio_dirs=(), ollama_dir=tmp_path / "ollama")
    widget = ModelPicker(hardware=load_profile("laptop-8gb"), library_sources=sources, catalog_path=served,
                         downloads=DownloadManager(state_file=tmp_path / "downloads.json"))
    qtbot.addWidget(widget)
    widget.show()
    tab = widget.recommended
    qtbot.waitUntil(lambda: bool(tab.table.source.rows) and all(r.sha256s[0] for r in tab.table.source.rows)
                    and not tab.checker.running and all(r.fit is not None for r in tab.table.source.rows),
                    timeout=TIMEOUT_MS)
    assert badge_text(tab.table.source.row(key(LLAMA))) == "Runs fully on GPU"
    widget.shutdown()


def test_new_settings_replan_the_lists(qtbot, picker):
    from dataclasses import replace as replaced

    picker.show()
    wait_checked(qtbot, picker.recommended)
    assert badge_text(picker.recommended.table.source.row(key(LLAMA))) == "Runs fully on GPU"
    picker.set_settings(replaced(picker.settings, context_length=131072))
    qtbot.waitUntil(lambda: badge_text(picker.recommended.table.source.row(key(LLAMA))) != "Runs fully on GPU"
                    and not picker.recommended.checker.running, timeout=TIMEOUT_MS)


# -- layout at the window's size: names readable, badges legible, download buttons whole ------------------------------

LONG_FILES = (("Llama 3.1 8B Instruct", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
               "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Q4_K_M", "Runs fully on GPU"),
              ("Llama 3.1 8B Instruct", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
               "Meta-Llama-3.1-8B-Instruct-Q8_0.gguf", "Q8_0", "Partial: 28 of 33 layers on GPU"),
              ("Mixtral 8x7B Instruct", "TheBloke/Mixtral-8x7B-Instruct-v0.1-GGUF",
               "mixtral-8x7b-instruct-v0.1.Q4_K_M.gguf", "Q4_K_M", "Too large for this machine"),
              ("Phi-3.5 mini", "bartowski/Phi-3.5-mini-instruct-GGUF", "Phi-3.5-mini-instruct-IQ3_XS.gguf",
               "IQ3_XS", "CPU only"))


@pytest.fixture
def idle_dialog(qtbot, tmp_path):
    """The picker in a dialog of the main window's size (1180 x 760), showing rows set by the test, no background
    work (nothing is loaded or planned)."""
    from PySide6.QtWidgets import QDialog, QVBoxLayout

    dialog = QDialog()
    sources = LibrarySources(app_dir=tmp_path / "app-models", lmstudio_dirs=(), ollama_dir=tmp_path / "ollama",
                             user_dirs=())
    picker = ModelPicker(hardware=load_profile("laptop-8gb"), library_sources=sources,
                         downloads=DownloadManager(state_file=tmp_path / "downloads.json"),
                         catalog_path=tmp_path / "none.json", refresh_catalog=False, parent=dialog)
    picker._started = True  # the test sets the rows itself
    layout = QVBoxLayout(dialog)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(picker)
    qtbot.addWidget(dialog)
    dialog.resize(1180, 760)
    yield dialog, picker
    picker.shutdown()


def _long_rows():
    from core.fit.planner import Plan
    from core.models.fit_check import FileFit
    from desktop.models.picker.rows import PickerRow

    def fit(repo, name, quant, verdict) -> FileFit:
        plan = Plan(verdict, 0, 33, 4096, "f16", True, (), 20.0, None, "", "")
        return FileFit(repo, name, quant, 5_000_000_000, plan)

    return [PickerRow(key=f"catalog:{repo}/{name}", origin="catalog", title=title, filename=name, quant=quant,
                      size=5_000_000_000, repo_id=repo, parts=(name,), fit=fit(repo, name, quant, verdict))
            for title, repo, name, quant, verdict in LONG_FILES]


def _shown_text(table, proxy_row: int, column: int) -> str:
    """The text the table's delegate draws in a cell, elided as it elides it."""
    from PySide6.QtWidgets import QStyleOptionViewItem

    index = table.model().index(proxy_row, column)
    option = QStyleOptionViewItem()
    option.initFrom(table)
    option.rect = table.visualRect(index)
    table.itemDelegate().initStyleOption(option, index)
    room = table.columnWidth(column) - 20  # the item's padding and the text margins, both sides
    return option.fontMetrics.elidedText(option.text, option.textElideMode, room)


def test_file_names_show_their_quantisation_at_the_windows_size(qtbot, idle_dialog):
    from desktop.models.picker.file_table import FILE, FIT, MODEL

    dialog, picker = idle_dialog
    table = picker.recommended.table
    table.source.set_rows(_long_rows())
    dialog.show()
    qtbot.waitExposed(dialog)
    assert table.columnWidth(FILE) >= 200 and table.columnWidth(MODEL) >= 140
    assert table.columnWidth(FIT) <= 160
    for proxy_row, (title, _repo, name, quant, _verdict) in enumerate(LONG_FILES):
        shown_file = _shown_text(table, proxy_row, FILE)
        assert shown_file.endswith(f"{quant}.gguf") and shown_file[:8] == name[:8], shown_file
        assert _shown_text(table, proxy_row, MODEL) == title
        assert table.model().index(proxy_row, FILE).data(Qt.ItemDataRole.ToolTipRole) == name


def test_split_files_keep_the_quantisation_in_the_name(qtbot, idle_dialog):
    from dataclasses import replace

    from desktop.models.picker.file_table import FILE

    dialog, picker = idle_dialog
    parts = tuple(f"qwen2.5-14b-instruct-q4_k_m-0000{i}-of-00003.gguf" for i in (1, 2, 3))
    row = replace(_long_rows()[0], key="catalog:split", filename=parts[0], parts=parts)
    table = picker.recommended.table
    table.source.set_rows([row])
    assert table.model().index(0, FILE).data() == "qwen2.5-14b-instruct-q4_k_m.gguf (+2 parts)"
    table.source.set_rows([replace(row, filename=f"{'x' * 40}-{row.filename}",
                                   parts=tuple(f"{'x' * 40}-{part}" for part in parts))])
    dialog.show()
    qtbot.waitExposed(dialog)
    shown = _shown_text(table, 0, FILE)
    assert "…" in shown and shown.endswith("q4_k_m.gguf (+2 parts)"), shown


@pytest.mark.parametrize("look", ["light", "dark"])
def test_fit_badges_keep_their_contrast_on_a_selected_row(qtbot, idle_dialog, look):
    from PySide6.QtGui import QColor

    from desktop.models.picker import style
    from desktop.models.picker.badges import COLOURS, badge_colours, badge_kind, contrast_ratio
    from desktop.models.picker.file_table import FIT, ROW_ROLE

    for kind in COLOURS:
        for dark in (False, True):
            background, text = badge_colours(kind, dark)
            assert contrast_ratio(background, text) >= 4.5, (kind, dark)
    dialog, picker = idle_dialog
    picker.setStyleSheet(style.style_sheet(look))
    table = picker.recommended.table
    table.source.set_rows(_long_rows())
    table.source.set_dark(look == "dark")
    dialog.show()
    qtbot.waitExposed(dialog)
    for proxy_row in range(len(LONG_FILES)):
        table.selectRow(proxy_row)  # selected, and the mouse over it
        table.setFocus()
        qtbot.wait(10)
        index = table.model().index(proxy_row, FIT)
        rect = table.visualRect(index)
        image = table.viewport().grab(rect).toImage()
        painted = image.pixelColor(int(image.width() * 0.02) + 6, image.height() // 2).name()
        background, text = badge_colours(badge_kind(index.data(ROW_ROLE)), look == "dark")
        assert contrast_ratio(painted, text) >= 4.5, (proxy_row, painted, text)
        assert QColor(painted) == QColor(background)


@pytest.mark.parametrize("width", [1180, 900])
def test_download_buttons_stay_whole_and_names_shorten(qtbot, idle_dialog, width):
    from core.models.downloads.manager import DownloadProgress, DownloadState

    dialog, picker = idle_dialog
    name = "Meta-Llama-3.1-8B-Instruct-abliterated-uncensored-imatrix-with-a-very-long-name-for-this-test.gguf"
    picker.downloads.show_progress(DownloadProgress("a", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", name,
                                                    DownloadState.DOWNLOADING, 10, 100, 5.0, 18))
    picker.downloads.show_progress(DownloadProgress("b", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", name,
                                                    DownloadState.FAILED, 10, 100, 0.0, None,
                                                    error="The file did not match the hub's SHA-256."))
    dialog.resize(width, 760)
    dialog.show()
    qtbot.waitExposed(dialog)
    qtbot.wait(20)
    scroll = picker.downloads.findChild(QScrollArea)
    assert not scroll.horizontalScrollBar().isVisible()
    viewport = scroll.viewport()
    for entry in picker.downloads.entries.values():
        shown_name, _repo = entry.name.texts()
        assert shown_name.endswith("test.gguf") and "…" in shown_name
        buttons = [b for b in (entry.pause_button, entry.resume_button, entry.cancel_button) if b.isVisible()]
        assert len(buttons) == 2
        for button in buttons:
            assert button.width() >= button.sizeHint().width(), button.text()
            right = button.mapTo(viewport, button.rect().topRight()).x()
            assert right < viewport.width(), (button.text(), right, viewport.width())


def test_a_download_being_checked_says_how_far_the_check_is():
    from core.models.downloads.manager import DownloadProgress, DownloadState
    from desktop.models.picker.downloads_list import status_text

    checking = DownloadProgress("a", "org/Model-GGUF", "model-Q4_K_M.gguf", DownloadState.VERIFYING,
                                4 << 30, 4 << 30, 0.0, None, checked_bytes=1 << 30)
    assert status_text(checking) == "Checking SHA-256 · 25 % of 4.0 GiB"


@pytest.mark.parametrize("width, model_column", [(1180, True), (880, False)])
def test_a_narrow_picker_keeps_every_column_readable_without_scrolling_sideways(qtbot, idle_dialog, width,
                                                                                  model_column):
    from desktop.models.picker.file_table import MODEL

    dialog, picker = idle_dialog
    dialog.resize(width, 700)
    dialog.show()
    qtbot.waitExposed(dialog)
    qtbot.wait(20)
    table = picker.recommended.table
    assert table.isColumnHidden(MODEL) is (not model_column)
    assert not table.horizontalScrollBar().isVisible()
    details_scroll = picker.details.findChild(QScrollArea)
    assert not details_scroll.horizontalScrollBar().isVisible()


def test_a_file_that_needs_the_workers_is_badged_so():
    from core.fit.planner import PlanRequest, plan
    from core.machine import workers
    from core.models.fit_check import FileFit
    from desktop.models.picker.badges import badge_kind
    from desktop.models.picker.rows import PickerRow

    info = read_model_info(zoo_model("llama3.1-8b"))
    lender = workers.Worker("192.168.1.20:50052", workers.PROTOCOL_VERSION,
                            (workers.WorkerDevice(0, 24 * 2**30, 24 * 2**30),), None)
    request = PlanRequest(context=32768, allow_context_shrink=False)

    def row(machine) -> PickerRow:
        fit = FileFit("repo", "llama.gguf", "Q4_K_M", info.file_size, plan(info, machine, request))
        return PickerRow("local:/llama.gguf", "local", "Llama", "llama.gguf", "Q4_K_M", info.file_size, fit=fit)

    alone, lent = row(load_profile("laptop-8gb")), row(workers.with_workers(load_profile("laptop-8gb"), [lender]))
    assert badge_text(alone).startswith("Partial")
    assert (badge_text(lent), badge_kind(lent)) == ("Fits with your workers", "full")


def test_a_catalog_vision_model_is_marked_counts_its_projector_and_downloads_both_files(qtbot, fake_hub,  # noqa: F811
                                                                                      tmp_path, user_folder):
    from core.fit.projector import read_projector_info
    from tests.fixtures.tiny_vision import write_tiny_vision_model

    vision = write_tiny_vision_model(tmp_path / "vision")
    repo, model, projector = "tester/Vision-GGUF", vision.model.name, vision.projector.name
    fake_hub.add_repo(repo, {model: vision.model.read_bytes(), projector: vision.projector.read_bytes()})
    figures = read_projector_info(vision.projector)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"schema": 1, "updated": "test", "models": [
        {"id": "v", "name": "Vision", "family": "Test", "parameters": "?", "repo": repo, "license": "mit",
         "description": "d", "files": [{"file": model, "approx_size": vision.model.stat().st_size}],
         "projector": {"file": projector, "approx_size": vision.projector.stat().st_size,
                       "info": figures.to_json(), "info_source": "test"}}]}))
    picker = make_picker(qtbot, catalog, tmp_path, user_folder)
    try:
        shown(qtbot, picker, key((repo, model)))
        row = picker.recommended.table.source.row(key((repo, model)))
        assert row.projector.filename == projector and row.fit.projector.info.weights_bytes == figures.weights_bytes
        table = picker.recommended.table
        assert table.source.data(table.source.index(0, 0)) == "Vision · vision"
        assert "the plan counts its weights" in picker.details.heading.text()
        picker.details.download_button.click()
        qtbot.waitUntil(lambda: picker.recommended.table.source.row(key((repo, model))).on_disk, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: (repo, projector) in picker.queue.latest
                        and picker.queue.latest[(repo, projector)].state.value == "done", timeout=TIMEOUT_MS)
        fetched = picker.queue.latest[(repo, projector)].path
        assert fetched.read_bytes() == vision.projector.read_bytes(), "verified like any file"
        assert fetched.parent == picker.recommended.table.source.row(key((repo, model))).local.path.parent
    finally:
        picker.shutdown()


def test_a_projector_whose_header_cannot_be_read_counts_its_listed_size_and_the_details_say_so(
        qtbot, fake_hub, tmp_path, user_folder):  # noqa: F811
    from core.models.fit_check import IMAGE_BUFFER_NOT_COUNTED
    from tests.fixtures.tiny_vision import write_tiny_vision_model

    vision = write_tiny_vision_model(tmp_path / "vision")
    repo, model = "tester/Vision-GGUF", vision.model.name
    fake_hub.add_repo(repo, {model: vision.model.read_bytes()})     # the projector's header is not there to read
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"schema": 1, "updated": "test", "models": [
        {"id": "v", "name": "Vision", "family": "Test", "parameters": "?", "repo": repo, "license": "mit",
         "description": "d", "files": [{"file": model, "approx_size": vision.model.stat().st_size}],
         "projector": {"file": "mmproj-vision-f16.gguf", "approx_size": 5000}}]}))
    picker = make_picker(qtbot, catalog, tmp_path, user_folder)
    try:
        shown(qtbot, picker, key((repo, model)))
        row = picker.recommended.table.source.row(key((repo, model)))
        assert row.fit.plan is not None and row.fit.projector.info.weights_bytes == 5000
        assert IMAGE_BUFFER_NOT_COUNTED in picker.details.explanation.text()
        assert IMAGE_BUFFER_NOT_COUNTED in picker.details.heading.text()
    finally:
        picker.shutdown()
