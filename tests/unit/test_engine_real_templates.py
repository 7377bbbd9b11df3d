"""Real published chat templates (tests/fixtures/chat_templates, see its manifest) render every common
conversation shape with the model's own template: none falls back to ChatML, none raises."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from core.engine.chat_format import MODEL_SOURCE, ChatTemplate
from core.engine.protocol import ThinkingChoice
from core.engine.reasoning import thinking_support

FOLDER = Path(__file__).parents[1] / "fixtures" / "chat_templates"
MANIFEST = json.loads((FOLDER / "manifest.json").read_text(encoding="utf-8"))["templates"]
TOKENS = {"bos_token": "<BOS>", "eos_token": "<EOS>"}

SYSTEM = {"role": "system", "content": "You answer in one sentence."}
QUESTION = {"role": "user", "content": "What is the capital of France?"}
ANSWER = {"role": "assistant", "content": "Paris."}
THOUGHTFUL_ANSWER = {"role": "assistant", "content": "Paris.", "reasoning_content": "France's capital city..."}
FOLLOW_UP = {"role": "user", "content": "And of Japan?"}
UNICODE = {"role": "user", "content": "Größe · 東京 · emoji 🦙 · ½ ✓"}

SHAPES = {
    "system and user": [SYSTEM, QUESTION],
    "user only": [QUESTION],
    "multi-turn": [SYSTEM, QUESTION, ANSWER, FOLLOW_UP],
    "a turn that carries reasoning": [QUESTION, THOUGHTFUL_ANSWER, FOLLOW_UP],
    "unicode": [UNICODE],
}


def template_for(entry: dict) -> ChatTemplate:
    text = (FOLDER / entry["file"]).read_text(encoding="utf-8")
    return ChatTemplate.for_model(text, model_name=entry["model"], **TOKENS)


def test_the_manifest_names_every_file_with_its_model_source_and_licence():
    files = {path.name for path in FOLDER.glob("*.jinja")}
    assert len(MANIFEST) >= 20
    assert {entry["file"] for entry in MANIFEST} == files
    for entry in MANIFEST:
        assert entry["model"] and entry["source"].startswith("ggml-org/llama.cpp models/templates/")
        assert "licence" in entry["licence"]


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_each_real_template_renders_every_conversation_shape(entry):
    template = template_for(entry)
    assert template.source == MODEL_SOURCE
    for shape, messages in SHAPES.items():
        prompt = template.render(messages)
        last_user = messages[-1]["content"]
        assert last_user in prompt, f"{shape}: the last message is missing"
        if shape == "system and user":
            assert SYSTEM["content"] in prompt, "the system prompt is lost (neither rendered nor merged)"


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["file"] for entry in MANIFEST])
def test_earlier_thinking_reaches_only_templates_that_read_it(entry):
    template = template_for(entry)
    prompt = template.render([QUESTION, THOUGHTFUL_ANSWER, FOLLOW_UP])
    text = template.text
    if "reasoning_content" not in text and "thinking" not in text:
        assert "France's capital city" not in prompt


def by_file(name: str) -> ChatTemplate:
    return template_for(next(entry for entry in MANIFEST if entry["file"] == name))


def test_gemma_2_refuses_a_system_turn_so_it_is_merged_into_the_first_user_turn():
    rendered = by_file("google-gemma-2-2b-it.jinja").render_prompt([SYSTEM, QUESTION])
    assert rendered.system_merged
    assert f"<start_of_turn>user\n{SYSTEM['content']}\n\n{QUESTION['content']}" in rendered.text


def test_llama_3_is_told_todays_date():
    prompt = by_file("meta-llama-Llama-3.1-8B-Instruct.jinja").render([QUESTION])
    assert f"Today Date: {date.today().strftime('%d %b %Y')}" in prompt
    assert "26 Jul 2024" not in prompt or date.today() == date(2024, 7, 26)


@pytest.mark.parametrize("file", ["NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
                                  "CohereForAI-c4ai-command-r-plus-tool_use.jinja",
                                  "meta-llama-Llama-3.1-8B-Instruct.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja"])
def test_templates_that_test_tools_is_defined_render_without_and_with_tools(file):
    template = by_file(file)
    assert QUESTION["content"] in template.render([QUESTION])
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                             "parameters": {"type": "object",
                                                            "properties": {"city": {"type": "string",
                                                                                     "description": "City"}}}}}
    assert "get_weather" in template.render([QUESTION], tools=[tool])


def test_a_tool_call_and_its_result_go_back_into_a_qwen_prompt_with_object_arguments():
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [QUESTION, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"}]
    prompt = by_file("Qwen-Qwen2.5-7B-Instruct.jinja").render(messages)
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert "18 °C" in prompt


def test_qwen3_thinking_can_be_switched_off_and_earlier_thinking_is_not_repeated():
    template = by_file("Qwen-Qwen3-0.6B.jinja")
    assert template.render([QUESTION], thinking=ThinkingChoice(enabled=False)).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert template.render([QUESTION]).endswith("<|im_start|>assistant\n")
    assert thinking_support(template.text) == thinking_support(template.text).__class__("think", True, ())


def test_gpt_oss_gets_its_reasoning_effort_and_earlier_thinking_in_its_thinking_field():
    template = by_file("openai-gpt-oss-120b.jinja")
    prompt = template.render([QUESTION], thinking=ThinkingChoice(effort="high"))
    assert "Reasoning: high" in prompt
    support = thinking_support(template.text)
    assert support.reasoning_format == "harmony" and support.efforts == ("low", "medium", "high")


def test_deepseek_v3_1_thinking_switch_reaches_the_template():
    template = by_file("deepseek-ai-DeepSeek-V3.1.jinja")
    assert template.render([QUESTION], thinking=ThinkingChoice(enabled=True)).endswith("<think>")
    assert template.render([QUESTION], thinking=ThinkingChoice(enabled=False)).endswith("</think>")
    assert thinking_support(template.text).can_toggle
