"""The output splitter: thinking, answer and tool calls come apart however the text is cut into tokens."""
from __future__ import annotations

import json

import pytest

from core.engine.protocol import ReasoningText, TokenText, ToolCallMade
from core.engine.reasoning import (HarmonySplitter, TagSplitter, output_family, splitter_for,
                                   thinking_support)
from core.engine.tool_calls import SYNTAXES, call_syntaxes

THINK = TagSplitter("<think>", "</think>", SYNTAXES)


def split_at(make, text: str, cuts: tuple[int, ...]):
    """Feed text in pieces cut at the given offsets; returns (reasoning, answer, calls, events)."""
    splitter = make()
    events, start = [], 0
    for cut in (*cuts, len(text)):
        events += splitter.feed(text[start:cut])
        start = cut
    events += splitter.finish()
    return splitter.reasoning, splitter.answer, splitter.tool_calls, events


def every_split(make, text: str):
    """The text fed whole, cut once at every point, and one character at a time."""
    yield split_at(make, text, ())
    for cut in range(1, len(text)):
        yield split_at(make, text, (cut,))
    yield split_at(make, text, tuple(range(1, len(text))))


def streamed(events, kind) -> str:
    return "".join(event.text for event in events if isinstance(event, kind))


@pytest.mark.parametrize("tags", [("<think>", "</think>"), ("<thinking>", "</thinking>"), ("[THINK]", "[/THINK]")])
def test_a_thinking_block_is_split_from_the_answer_at_every_token_boundary(tags):
    opener, closer = tags
    text = f"{opener}\nThe user greets me; 1 < 2 and [x].\n{closer}\n\nHello <b>there</b> [1]!"
    for reasoning, answer, calls, events in every_split(lambda: TagSplitter(opener, closer), text):
        assert reasoning == "The user greets me; 1 < 2 and [x]."
        assert answer == "Hello <b>there</b> [1]!"
        assert streamed(events, ReasoningText) == reasoning and streamed(events, TokenText) == answer
        assert not calls


def test_output_that_starts_inside_a_block_the_prompt_opened():
    make = lambda: splitter_for("...<think>...", "<|im_start|>assistant\n<think>\n")
    for reasoning, answer, _, _ in every_split(make, "Let me think.\n</think>\n\nFour."):
        assert (reasoning, answer) == ("Let me think.", "Four.")


def test_a_model_without_thinking_keeps_every_character_of_its_answer():
    text = "  Use <think> tags like this: </think> and {json} [THINK] ✓\n"
    for reasoning, answer, calls, _ in every_split(lambda: TagSplitter(None, None, SYNTAXES), text):
        assert (reasoning, answer, calls) == ("", text, ())


def test_a_think_tag_after_the_answer_began_is_answer_text():
    _, answer, _, _ = split_at(lambda: TagSplitter("<think>", "</think>"), "Write <think> here.", ())
    assert answer == "Write <think> here."


def test_an_unclosed_block_at_the_end_stays_thinking_and_a_cut_marker_is_kept_as_text():
    reasoning, answer, _, _ = split_at(lambda: TagSplitter("<think>", "</think>"), "<think>still going </thi", ())
    assert (reasoning, answer) == ("still going </thi", "")


HARMONY_ANSWER = ("<|channel|>analysis<|message|>User asks 2+2. Simple.<|end|>"
                  "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.")


def test_harmony_channels_are_read_and_their_tokens_never_shown():
    for reasoning, answer, calls, events in every_split(HarmonySplitter, HARMONY_ANSWER):
        assert (reasoning, answer, calls) == ("User asks 2+2. Simple.", "2 + 2 = 4.", ())
        assert "<|" not in streamed(events, TokenText) + streamed(events, ReasoningText)


def test_a_harmony_tool_call_on_the_commentary_channel():
    text = ("<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
            'to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>')
    for reasoning, answer, calls, events in every_split(HarmonySplitter, text):
        assert reasoning == "Need weather." and answer == ""
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
        assert [e.call for e in events if isinstance(e, ToolCallMade)] == list(calls)


CALLS = {
    "qwen / hermes": ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', "<tool_call>"),
    "qwen3-coder": ("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n"
                    "</tool_call>", "<tool_call>"),
    "glm": ("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
            "<tool_call>"),
    "mistral json": ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123xyz"}]',
                     "[TOOL_CALLS]"),
    "mistral args": ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', "[TOOL_CALLS]"),
    "llama 3 python tag": ('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', "<|python_tag|>"),
    "deepseek v3": ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                    '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>', "<｜tool▁calls▁begin｜>"),
    "deepseek v3.1": ('<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}'
                      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "<｜tool▁calls▁begin｜>"),
    "kimi k2": ('<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>'
                '{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>', "<|tool_calls_section_begin|>"),
}


@pytest.mark.parametrize("family", CALLS)
def test_tool_calls_of_each_family_are_read_at_every_token_boundary(family):
    call_text, mark = CALLS[family]
    text = "<think>I should look it up.</think>\n" + call_text
    make = lambda: TagSplitter("<think>", "</think>", call_syntaxes(mark))
    for reasoning, answer, calls, _ in every_split(make, text):
        assert reasoning == "I should look it up." and answer == ""
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
        assert calls[0].id


def test_a_llama_3_answer_that_is_a_call_becomes_a_call_only_when_tools_were_given():
    template = 'x "parameters" <|eot_id|>'
    answer = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    with_tools = splitter_for(template, "", tools_given=True)
    with_tools.feed(answer)
    with_tools.finish()
    assert [c.name for c in with_tools.tool_calls] == ["get_weather"] and with_tools.answer == ""
    without = splitter_for(template, "")
    without.feed(answer)
    without.finish()
    assert without.answer == answer and not without.tool_calls


def test_a_block_that_is_not_a_call_is_given_back_as_answer_text():
    _, answer, calls, _ = split_at(lambda: TagSplitter(None, None, SYNTAXES),
                                   "See <tool_call>not a call at all</tool_call> here", ())
    assert answer == "See <tool_call>not a call at all</tool_call> here" and not calls


@pytest.mark.parametrize("template, tokens, family", [
    ("{{ '<|channel|>analysis' }}", (), "harmony"), ("plain", ("<|channel|>",), "harmony"),
    ("{{ '<think>' }}", (), "think"), ("plain", ("<think>",), "think"), ("[THINK]", (), "think-bracket"),
    ("<thinking>", (), "thinking"), ("{{ messages }}", (), "none")])
def test_the_family_comes_from_the_template_and_the_vocabulary(template, tokens, family):
    assert output_family(template, tokens) == family


def test_thinking_support_reads_the_switch_from_the_template():
    assert thinking_support("{% if enable_thinking %}<think>{% endif %}").can_toggle
    assert not thinking_support("<think>").can_toggle
