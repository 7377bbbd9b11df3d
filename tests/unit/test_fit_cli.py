"""`llamadesk-cli fit`: the plan as text and JSON, exact layers, exact mode, and bad input."""
from __future__ import annotations

import argparse
import json

import pytest

from core.cli import fit_cmd
from tests.fixtures.model_zoo import zoo_model

KEYS = {"verdict", "n_gpu_layers", "n_layers", "context", "kv_type", "flash_attn", "predicted_tokens_per_second",
        "explanation", "devices"}
DEVICE_KEYS = {"name", "kind", "free_bytes", "weights_bytes", "kv_bytes", "compute_bytes", "other_bytes",
               "total_bytes"}


def fit(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="llamadesk-cli")
    fit_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fit", *argv])
    return args.handler(args)


@pytest.fixture(scope="module")
def llama8b():
    return str(zoo_model("llama3.1-8b"))


def test_json_has_the_promised_keys(llama8b, capsys):
    assert fit(llama8b, "--hardware", "laptop-8gb", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert KEYS <= set(data)
    assert all(set(device) == DEVICE_KEYS for device in data["devices"])
    assert [d["kind"] for d in data["devices"]] == ["gpu", "host"]
    assert data["exact"] is False


def test_gpu_layers_are_taken_exactly(llama8b, capsys):
    assert fit(llama8b, "--hardware", "laptop-8gb", "--gpu-layers", "7", "--ctx", "4096", "--kv-type", "q8_0",
               "--flash-attn", "on", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["n_gpu_layers"], data["context"], data["kv_type"], data["flash_attn"]) == (7, 4096, "q8_0", True)
    assert data["verdict"] == "Partial: 7 of 33 layers on GPU"


def test_text_output_is_a_table(llama8b, capsys):
    assert fit(llama8b, "--hardware", "desktop-24gb", "--ctx", "8192") == 0
    out = capsys.readouterr().out
    assert "Verdict      Runs fully on GPU" in out
    assert "NVIDIA GeForce RTX 4090" in out and "Host (RAM)" in out and "KV cache" in out


def test_exact_mode_uses_llama_cpp(smollm2, capsys):
    assert fit(str(smollm2), "--hardware", "cpu-only-16gb", "--ctx", "8192", "--exact", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    host = data["devices"][-1]
    assert data["exact"] is True and host["kv_bytes"] == 180 * 1024 * 1024


def test_exact_mode_cannot_check_a_simulated_gpu(llama8b, capsys):
    assert fit(llama8b, "--hardware", "laptop-8gb", "--exact") != 0
    assert "--exact" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, b"not a model at all", b"GGUF\x03\x00\x00\x00"])
def test_bad_input_is_one_line_and_a_failure(tmp_path, capsys, content):
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    assert fit(str(path), "--hardware", "laptop-8gb") != 0
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1


def test_unknown_profile_is_a_failure(llama8b, capsys):
    assert fit(llama8b, "--hardware", "no-such-machine") != 0
    assert "no-such-machine" in capsys.readouterr().err


def test_json_says_where_the_experts_go(capsys):
    assert fit(str(zoo_model("gpt-oss-20b")), "--hardware", "laptop-8gb", "--ctx", "8192", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu_expert_layers"] > 0 and data["n_gpu_layers"] == data["n_layers"]
    assert data["placement"].startswith(f"Experts of {data['cpu_expert_layers']} of 24 layers on the CPU")
