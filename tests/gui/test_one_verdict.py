"""One verdict everywhere: the same hub files under the same saved settings get the same verdict and figures from
`llamadesk-cli files --json` and from the picker's rows, and a downloaded copy from `llamadesk-cli fit --json`."""
from __future__ import annotations

import argparse
import json

import pytest

from core import settings as settings_store
from core.cli import fit_cmd, models_cmd
from core.gguf.reader import read_model_info
from core.machine.hardware import load_profile
from core.models.downloads.manager import DownloadManager
from core.models.library import LibrarySources
from core.settings import Settings
from desktop.models.picker import ModelPicker
from tests.fixtures.fake_hub import FakeFile, fake_hub  # noqa: F401  (fixture)
from tests.fixtures.model_zoo import zoo_model
from tests.fixtures.tiny_gguf import write_tiny_model

REPO = "tester/Mixed-GGUF"
PROFILE = "laptop-8gb"
TIMEOUT_MS = 20000
# Not the defaults, so that a command planning with its own defaults instead of the user's choice shows.
SAVED = Settings(context_length=16384, kv_type="q8_0", flash_attn=True, safety_margin_mib=512)


def _header_only(name: str) -> FakeFile:
    path = zoo_model(name)
    with open(path, "rb") as handle:
        return FakeFile.virtual(handle.read(read_model_info(path).tensor_data_offset), path.stat().st_size)


@pytest.fixture
def served(fake_hub, tmp_path):  # noqa: F811
    fake_hub.add_repo(REPO, {
        "Llama-3.1-8B-Q4_K_M.gguf": _header_only("llama3.1-8b"),
        "Mixtral-8x7B-Q4_K_M.gguf": _header_only("mixtral-8x7b"),
        "Mistral-7B-Q4_K_M.gguf": _header_only("mistral-7b-v0.3"),
        "tiny-F32.gguf": write_tiny_model(tmp_path / "tiny.gguf").read_bytes(),
    })
    settings_store.save(SAVED)
    return fake_hub


def cli(module, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="llamadesk-cli")
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_the_cli_and_the_picker_give_each_file_the_same_verdict(qtbot, served, tmp_path, capsys):
    assert cli(models_cmd, "files", REPO, "--hardware", PROFILE, "--json") == 0
    from_cli = {f["name"]: (f["verdict"], f["n_gpu_layers"], f["context"]) for f in
                json.loads(capsys.readouterr().out)["files"]}

    picker = ModelPicker(settings_store.load(), hardware=load_profile(PROFILE),
                         downloads=DownloadManager(state_file=tmp_path / "downloads.json"),
                         library_sources=LibrarySources(app_dir=tmp_path / "none", lmstudio_dirs=(),
                                                        ollama_dir=tmp_path / "no-ollama"),
                         catalog_path=None, refresh_catalog=False, debounce_ms=5)
    qtbot.addWidget(picker)
    try:
        picker.show()
        picker.tabs.setCurrentWidget(picker.search)
        picker.search.query.setText("Mixed")
        picker.search.go.click()
        qtbot.waitUntil(lambda: picker.search.repos.rowCount() == 1, timeout=TIMEOUT_MS)
        picker.search.repos.selectRow(0)
        table = picker.search.table.source
        qtbot.waitUntil(lambda: len(table.rows) == 4 and all(r.fit is not None for r in table.rows),
                        timeout=TIMEOUT_MS)
        from_picker = {r.filename: (r.fit.plan.verdict, r.fit.plan.n_gpu_layers, r.fit.plan.context)
                       for r in table.rows}
    finally:
        picker.shutdown()

    assert from_picker == from_cli
    verdicts = {verdict for verdict, _, _ in from_cli.values()}
    assert len(verdicts) >= 2, f"the files should not all get one verdict: {from_cli}"
    assert {context for _, _, context in from_cli.values()} <= {SAVED.context_length, 512}, \
        "the saved context, capped at a model's trained one, is what both plan"


def test_a_local_file_gets_from_fit_what_the_hub_copy_gets_from_files(served, capsys):
    path = zoo_model("llama3.1-8b")
    assert cli(fit_cmd, "fit", str(path), "--hardware", PROFILE, "--json") == 0
    local = json.loads(capsys.readouterr().out)
    assert cli(models_cmd, "files", REPO, "--hardware", PROFILE, "--json") == 0
    (remote,) = [f for f in json.loads(capsys.readouterr().out)["files"] if f["name"].startswith("Llama")]
    assert (local["verdict"], local["n_gpu_layers"], local["context"], local["kv_type"]) == \
        (remote["verdict"], remote["n_gpu_layers"], remote["context"], SAVED.kv_type)
