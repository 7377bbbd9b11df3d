"""The real engine with tiny models that carry real chat templates and real thinking tokens; a grammar forces
what they write, so thinking, answer and tool calls must come apart in the stream as users will see them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.engine.client import EngineClient
from core.engine.errors import InvalidGrammar, TemplateFailed
from core.engine.protocol import (AnswerFinished, LoadSettings, ReasoningText, SamplingSettings, ThinkingChoice,
                                  TokenText, ToolCallMade)
from tests.fixtures.tiny_gguf import HARMONY_TOKENS, THINK_TOKENS, write_tiny_model

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "chat_templates"
QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City"}}}}}


def forced(grammar: str, max_tokens: int = 200) -> SamplingSettings:
    return SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=max_tokens, grammar=grammar)


def answer(engine: EngineClient, grammar: str, messages=QUESTION, **options):
    events = list(engine.chat(messages, forced(grammar), **options))
    finished = events[-1]
    assert isinstance(finished, AnswerFinished)
    return events, finished


def streamed(events, kind) -> str:
    return "".join(event.text for event in events if isinstance(event, kind))


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """One engine per model, loaded on first use, all closed at the end."""
    folder = tmp_path_factory.mktemp("reasoning-models")
    home = tmp_path_factory.mktemp("engine-home")
    clients: dict[str, EngineClient] = {}

    def engine(name: str, template_file: str | None, *, template_text: str | None = None, n_ctx: int = 2048,
               **tokens) -> EngineClient:
        if name not in clients:
            text = template_text if template_file is None else (TEMPLATES / template_file).read_text("utf-8")
            path = write_tiny_model(folder / f"{name}.gguf", chat_template=text, seed=5, **tokens)
            client = EngineClient()
            client.load(LoadSettings(str(path), n_ctx=n_ctx, n_threads=1))
            clients[name] = client
        return clients[name]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAMADESK_HOME", str(home))
        yield engine
        for client in clients.values():
            client.close()


def qwen3(engines) -> EngineClient:
    return engines("qwen3", "Qwen-Qwen3-0.6B.jinja", user_tokens=THINK_TOKENS)


def test_qwen3_thinking_and_answer_arrive_apart(engines):
    engine = qwen3(engines)
    assert engine.loaded.thinking.reasoning_format == "think" and engine.loaded.thinking.can_toggle
    events, finished = answer(engine, 'root ::= <think> "\\nTwo and two make four.\\n" </think> "\\n\\nFour."')
    assert streamed(events, ReasoningText) == finished.reasoning == "Two and two make four."
    assert streamed(events, TokenText) == finished.text == "Four."
    assert 0 < finished.stats.reasoning_tokens < finished.stats.completion_tokens
    assert not finished.stats.system_prompt_merged


def test_qwen3_with_thinking_switched_off_is_told_so_in_its_prompt(engines):
    _, finished = answer(qwen3(engines), 'root ::= "Four."', thinking=ThinkingChoice(enabled=False))
    assert finished.stats.prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert (finished.text, finished.reasoning, finished.stats.reasoning_tokens) == ("Four.", "", 0)


def test_qwen3_tool_call_is_made_and_kept_out_of_the_answer(engines):
    grammar = 'root ::= <think> "Look it up." </think> "\\n\\n" <tool_call> ' \
              '"\\n{\\"name\\": \\"get_weather\\", \\"arguments\\": {\\"city\\": \\"Paris\\"}}\\n" </tool_call>'
    events, finished = answer(qwen3(engines), grammar, tools=[WEATHER_TOOL])
    calls = [event.call for event in events if isinstance(event, ToolCallMade)]
    assert [(call.name, json.loads(call.arguments)) for call in calls] == [("get_weather", {"city": "Paris"})]
    assert finished.tool_calls == tuple(calls) and finished.text == "" and finished.reasoning == "Look it up."
    assert '"name": "get_weather"' in finished.stats.prompt         # the template showed the model its tool


def test_history_thinking_goes_back_only_as_the_template_reads_it(engines):
    history = QUESTION + [{"role": "assistant", "content": "Four.", "reasoning_content": "SECRET-THOUGHT"},
                          {"role": "user", "content": "And 3+3?"}]
    _, finished = answer(qwen3(engines), 'root ::= "Six."', messages=history)
    assert "And 3+3?" in finished.stats.prompt and finished.text == "Six."
    # Qwen3's template drops the thinking of turns before the last user message
    assert "SECRET-THOUGHT" not in finished.stats.prompt


def test_a_closing_tag_spelled_over_several_byte_tokens_ends_thinking_opened_by_the_prompt(engines):
    engine = engines("r1-distill", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")     # no <think> token
    events, finished = answer(engine, 'root ::= "Adding: four." "</think>" "\\n\\nIt is 4."',
                              thinking=ThinkingChoice(enabled=True))
    assert finished.stats.prompt.rstrip().endswith("<think>")
    assert streamed(events, ReasoningText) == finished.reasoning == "Adding: four."
    assert streamed(events, TokenText) == finished.text == "It is 4."


def gpt_oss(engines) -> EngineClient:
    return engines("gpt-oss", "openai-gpt-oss-120b.jinja", control_tokens=HARMONY_TOKENS)


def test_gpt_oss_harmony_channels_are_read_and_never_shown(engines):
    engine = gpt_oss(engines)
    assert engine.loaded.thinking.reasoning_format == "harmony"
    assert engine.loaded.thinking.efforts == ("low", "medium", "high")
    grammar = ('root ::= <|channel|> "analysis" <|message|> "User asks a sum." <|end|> '
               '<|start|> "assistant" <|channel|> "final" <|message|> "Four."')
    events, finished = answer(engine, grammar, thinking=ThinkingChoice(effort="low"))
    assert "Reasoning: low" in finished.stats.prompt
    assert streamed(events, ReasoningText) == finished.reasoning == "User asks a sum."
    assert streamed(events, TokenText) == finished.text == "Four."
    assert "analysis" not in finished.text and "assistantfinal" not in finished.text


def test_gpt_oss_calls_a_tool_on_its_commentary_channel(engines):
    grammar = ('root ::= <|channel|> "analysis" <|message|> "Need weather." <|end|> <|start|> "assistant" '
               '<|channel|> "commentary to=functions.get_weather " <|constrain|> "json" <|message|> '
               '"{\\"city\\": \\"Paris\\"}"')  # <|call|> (end of generation) follows
    events, finished = answer(gpt_oss(engines), grammar, tools=[WEATHER_TOOL])
    assert [(call.name, json.loads(call.arguments)) for call in finished.tool_calls] == [
        ("get_weather", {"city": "Paris"})]
    assert [event.call for event in events if isinstance(event, ToolCallMade)] == list(finished.tool_calls)
    assert finished.text == "" and finished.reasoning == "Need weather."


def test_gemma_2_gets_the_system_prompt_inside_the_first_user_turn(engines):
    engine = engines("gemma2", "google-gemma-2-2b-it.jinja")
    _, finished = answer(engine, 'root ::= "Four."')
    assert finished.stats.system_prompt_merged
    assert "<start_of_turn>user\nBe brief.\n\nWhat is 2+2?<end_of_turn>" in finished.stats.prompt


def test_a_bad_grammar_is_a_readable_error_and_the_model_answers_next(engines):
    engine = qwen3(engines)
    with pytest.raises(InvalidGrammar, match="does not parse"):
        answer(engine, "root ::= (unclosed")
    assert answer(engine, 'root ::= "Fine."')[1].text == "Fine."


@pytest.mark.parametrize("hostile, words", [
    ("{{ 'x' * 10**10 }}", "MB"),
    # no output: only the time limit can stop it (writing "x" each round raced the memory limit on fast machines)
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "did not finish"),
])
def test_a_hostile_template_is_stopped_and_the_engine_lives_on(engines, hostile, words):
    engine = engines(f"hostile-{words.replace(' ', '-')}", None, template_text=hostile)
    assert engine.loaded.chat_template_source == "model" and engine.loaded.steps == ()
    with pytest.raises(TemplateFailed, match=words) as failure:
        answer(engine, 'root ::= "x"')
    assert f"hostile-{words.replace(' ', '-')}.gguf" in str(failure.value)
    assert engine.is_alive() and engine.loaded is not None
