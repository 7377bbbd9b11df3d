"""llamadesk-cli as scripts use it: JSON keys, one-line errors, non-zero exits."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def bad_model_files(tmp_path: Path, real_model: Path) -> dict[str, Path]:
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("these are my notes, not a model\n")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(real_model.read_bytes()[: 3_000_000])
    return {"missing": tmp_path / "does-not-exist.gguf", "not gguf": text_file, "truncated": truncated}


def test_hardware_json_describes_this_machine():
    result = cli("hardware", "--json")
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["host"]["ram_total_bytes"] > 0
    assert "CPU" in snapshot["backends"]


def test_hardware_prints_a_readable_summary():
    result = cli("hardware")
    assert result.returncode == 0, result.stderr
    assert "RAM" in result.stdout and "Backends" in result.stdout


def test_inspect_reads_the_real_model(smollm2):
    result = cli("inspect", str(smollm2), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["architecture"] == "llama"
    assert info["n_layers"] == 30
    assert info["has_chat_template"] is True


@pytest.mark.parametrize("command", ["inspect", "chat"])
def test_bad_model_files_give_one_line_and_a_non_zero_exit(command, tmp_path, smollm2):
    for kind, path in bad_model_files(tmp_path, smollm2).items():
        args = [command, str(path)] + (["--prompt", "hi"] if command == "chat" else [])
        result = cli(*args)
        assert result.returncode != 0, f"{kind}: exit code 0"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, f"{kind}: expected one line, got {result.stderr!r}"
        assert lines[0].startswith("llamadesk-cli: error: ")
        assert path.name in lines[0] or "GGUF" in lines[0], f"{kind}: {lines[0]}"


@pytest.mark.model
def test_chat_json_answers_with_the_documented_keys(smollm2):
    result = cli("chat", str(smollm2), "--prompt", "What is the capital of France?", "--json",
                 "--max-tokens", "40", "--seed", "1", "--temperature", "0", "--ctx", "1024", "--threads", "2")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"text", "reasoning", "tool_calls", "load_seconds", "ttft_seconds", "prompt_tokens",
                           "completion_tokens", "tokens_per_second", "n_gpu_layers", "backend"}
    assert answer["text"].strip()
    assert (answer["reasoning"], answer["tool_calls"]) == ("", [])   # SmolLM2 neither thinks nor calls tools
    assert 0 < answer["completion_tokens"] <= 40
    assert answer["tokens_per_second"] > 0
    assert answer["n_gpu_layers"] == 0


@pytest.mark.model
def test_chat_streams_the_answer_to_stdout_and_figures_to_stderr(smollm2):
    result = cli("chat", str(smollm2), "--prompt", "Say hello.", "--max-tokens", "16", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "tok/s" in result.stderr and "tok/s" not in result.stdout


def test_text_output_streams_thinking_to_stderr_marked_and_the_answer_to_stdout(capsys):
    from core.cli.chat_cmd import AnswerPrinter
    from core.engine.protocol import ReasoningText, TokenText, ToolCall, ToolCallMade

    printer = AnswerPrinter(stream=True)
    for event in (ReasoningText("Oslo is "), ReasoningText("cold."), ToolCallMade(ToolCall("c1", "weather", '{"q": 1}')),
                  TokenText("Cold"), TokenText(".")):
        printer.show(event)
    printer.end()
    out, err = capsys.readouterr()
    assert out == "Cold.\n"
    assert err == '[thinking]\nOslo is cold.\n[/thinking]\n[tool call] weather {"q": 1}\n'


def test_json_mode_prints_nothing_while_the_answer_streams(capsys):
    from core.cli.chat_cmd import AnswerPrinter
    from core.engine.protocol import ReasoningText, TokenText

    printer = AnswerPrinter(stream=False)
    printer.show(ReasoningText("hmm"))
    printer.show(TokenText("Hi"))
    printer.end()
    assert capsys.readouterr() == ("", "")


# A Qwen3-style template: the prompt opens the thinking block unless thinking is switched off, so a tiny
# random-weight model's whole output is thinking (on) or answer (off) - the real engine splits it.
SWITCHABLE_THINKING_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}"
    "{% else %}{{ '<think>\n' }}{% endif %}{% endif %}")


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory):
    from tests.fixtures.tiny_gguf import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("thinking") / "thinker.gguf",
                            chat_template=SWITCHABLE_THINKING_TEMPLATE)


def tiny_chat(model, *extra: str) -> subprocess.CompletedProcess:
    return cli("chat", str(model), "--prompt", "hi", "--max-tokens", "8", "--temperature", "0", "--seed", "1",
               "--threads", "1", "--ctx", "256", *extra)


def test_a_thinking_models_reasoning_goes_to_its_own_key_and_to_stderr(thinking_model):
    answer = json.loads(tiny_chat(thinking_model, "--json").stdout)
    assert answer["reasoning"] and answer["text"] == "" and answer["tool_calls"] == []
    result = tiny_chat(thinking_model)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "\n"
    assert result.stderr.startswith("[thinking]\n") and "\n[/thinking]\n" in result.stderr
    assert "thinking) at" in result.stderr          # the figures line counts the thinking tokens


def test_thinking_off_makes_the_output_the_answer(thinking_model):
    answer = json.loads(tiny_chat(thinking_model, "--json", "--thinking", "off").stdout)
    assert answer["text"] and answer["reasoning"] == ""
    assert "[thinking]" not in tiny_chat(thinking_model, "--thinking", "off").stderr
