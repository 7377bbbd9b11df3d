"""llamadesk-cli search | files | download | models, against the fake hub."""
from __future__ import annotations

import argparse

import pytest

from core.cli import models_cmd
from tests.fixtures.fake_hub import Fault
from tests.fixtures.tiny_gguf import write_tiny_model


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="llamadesk-cli")
    models_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture
def smol_hub(fake_hub, smollm2, tmp_path):  # noqa: F811
    tiny = write_tiny_model(tmp_path / "tiny.gguf").read_bytes()
    fake_hub.add_repo("org/Smol-GGUF", {"SmolLM2-Q4_1.gguf": smollm2.read_bytes(), "tiny-F32.gguf": tiny,
                                        "split-F32-00001-of-00002.gguf": tiny, "split-F32-00002-of-00002.gguf": tiny},
                      downloads=42)
    return fake_hub


def test_search_prints_a_table(smol_hub, capsys):
    assert run_cli("search", "smol") == 0
    out = capsys.readouterr().out
    assert "org/Smol-GGUF" in out and "42" in out


def test_files_shows_fit_badges_for_a_hardware_profile(smol_hub, capsys):
    assert run_cli("files", "org/Smol-GGUF", "--hardware", "laptop-8gb") == 0
    out = capsys.readouterr().out
    smol_line = next(line for line in out.splitlines() if line.startswith("SmolLM2-Q4_1.gguf"))
    assert "Runs fully on GPU" in smol_line and "Q4_1" in smol_line
    assert "split-F32.gguf" in out and "[split 2 parts]" in out


def test_files_json(smol_hub, capsys):
    import json

    assert run_cli("files", "org/Smol-GGUF", "--hardware", "cpu-only-16gb", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    smol = next(f for f in data["files"] if f["name"] == "SmolLM2-Q4_1.gguf")
    assert smol["verdict"] == "CPU only" and len(smol["parts"][0]["sha256"]) == 64


def test_download_prints_the_verified_path_last_and_progress_on_stderr(smol_hub, capsys, smollm2):
    assert run_cli("download", "org/Smol-GGUF", "SmolLM2-Q4_1.gguf") == 0
    captured = capsys.readouterr()
    last = captured.out.strip().splitlines()[-1]
    from pathlib import Path

    assert Path(last).read_bytes() == smollm2.read_bytes()
    assert "SmolLM2-Q4_1.gguf" in captured.err and "done" in captured.err
    assert "checking SHA-256" in captured.err  # the check is shown, not a silent pause at 100 %


def test_download_of_a_split_model_fetches_every_part(smol_hub, capsys):
    assert run_cli("download", "org/Smol-GGUF", "split-F32.gguf") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[-1].endswith("split-F32-00001-of-00002.gguf")


@pytest.mark.parametrize("repo, name, fault, reason", [
    ("org/Smol-GGUF", "tiny-F32.gguf", Fault(corrupt=True), "did not match the hub's SHA-256"),
    ("org/Smol-GGUF", "absent.gguf", None, "not found"),
    ("org/Smol-GGUF", "../../x.gguf", None, "outside the model folder"),
    ("org/Smol-GGUF", "tiny-F32.gguf", Fault(status=401), "gated"),
])
def test_download_failure_is_one_line_and_non_zero(smol_hub, capsys, repo, name, fault, reason):
    if fault:
        smol_hub.add_fault(repo, name, fault)
    assert run_cli("download", repo, name) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    error_lines = [line for line in captured.err.splitlines() if line.startswith("llamadesk-cli: error:")]
    assert len(error_lines) == 1 and reason in error_lines[0]


def test_models_lists_what_was_downloaded_and_user_folders(smol_hub, capsys, tmp_path):
    assert run_cli("download", "org/Smol-GGUF", "tiny-F32.gguf") == 0
    folder = tmp_path / "mine"
    folder.mkdir()
    write_tiny_model(folder / "own.gguf")
    capsys.readouterr()
    assert run_cli("models", "--folder", str(folder), "--hardware", "laptop-8gb") == 0
    out = capsys.readouterr().out
    downloaded = next(line for line in out.splitlines() if line.startswith("tiny-F32.gguf"))
    assert "huggingface" in downloaded and "Runs fully on GPU" in downloaded
    assert "own.gguf" in out and "folder" in out
