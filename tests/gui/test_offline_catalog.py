"""The Recommended tab with the network closed: files with shipped plan inputs are badged in the picker's first batch
of results, with no header read; the others say, in a sentence, that their figures need the hub."""
from __future__ import annotations

from core.machine.hardware import load_profile
from core.models.catalog import load_catalog
from core.models.downloads.manager import DownloadManager
from core.models.library import LibrarySources
from core.models.remote_headers import HeaderCache
from desktop.models.picker import ModelPicker
from desktop.models.picker.badges import CHECKING, UNKNOWN, badge_text

TIMEOUT_MS = 20000
OFFLINE_SENTENCE = "You are offline — figures for this file need its header from Hugging Face."


def test_recommended_is_badged_offline_at_once_from_the_shipped_plan_inputs(qtbot, tmp_path):
    shipped = load_catalog(use_refresh_cache=False)
    with_inputs = {f"catalog:{m.repo_id}/{f.filename}" for m, f in shipped.files() if f.plan_inputs is not None}
    without = {f"catalog:{m.repo_id}/{f.filename}" for m, f in shipped.files() if f.plan_inputs is None}
    assert len(with_inputs) >= 10 and without
    sources = LibrarySources(app_dir=tmp_path / "app-models", lmstudio_dirs=(), ollama_dir=tmp_path / "ollama")
    picker = ModelPicker(hardware=load_profile("laptop-8gb"), library_sources=sources,
                         downloads=DownloadManager(state_file=tmp_path / "downloads.json"))
    qtbot.addWidget(picker)
    tab = picker.recommended
    first_batch: list[set[str]] = []
    tab.checker.row_fitted.connect(lambda _row: first_batch or first_batch.append(
        {r.key for r in tab.table.source.rows if r.fit is not None}))
    picker.show()
    qtbot.waitUntil(lambda: bool(first_batch), timeout=TIMEOUT_MS)
    # The first results to arrive are every file that has plan inputs, and only those: no header, no worker process.
    assert first_batch[0] == with_inputs
    for row_key in with_inputs:
        row = tab.table.source.row(row_key)
        assert badge_text(row) not in (CHECKING, UNKNOWN), row_key
        assert row.fit.plan is not None and row.fit.entries == ()
    assert not any(HeaderCache().root.rglob("*.header"))  # nothing was fetched or cached for them

    qtbot.waitUntil(lambda: not tab.checker.running, timeout=TIMEOUT_MS)
    for row_key in without:
        row = tab.table.source.row(row_key)
        assert badge_text(row) == UNKNOWN and row.fit.error == OFFLINE_SENTENCE, row_key

    assert tab.table.select_key(sorted(without)[0])
    qtbot.waitUntil(lambda: OFFLINE_SENTENCE in picker.details.verdict.text() + picker.details.explanation.text(),
                    timeout=TIMEOUT_MS)
    assert "Errno" not in picker.details.verdict.text() + picker.details.explanation.text()
    picker.shutdown()
