"""The chat domain: message trees, branch switching, presets and what the engine is sent."""
from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from core.chat.conversation import (CUSTOM_PRESET, PRESETS, ChatError, Conversation, Message, MessageStats,
                                    SamplingValues, ThinkingSetting, ToolCall, context_messages, preset_name,
                                    reasoning_left_out, suggest_title)


def chat_with_two_answers() -> tuple[Conversation, Message, Message, Message]:
    conversation = Conversation(system_prompt="Be brief.")
    question = conversation.add("user", "What is 2+2?")
    first = conversation.add("assistant", "5")
    second = conversation.add("assistant", "4", parent_id=question.id)  # regenerate
    return conversation, question, first, second


# --- the simple API the window uses ---

def test_the_simple_api_keeps_working():
    conversation = Conversation(system_prompt="You are helpful.")
    assert conversation.messages == []
    conversation.add("user", "Hi")
    answer = conversation.add("assistant", "Hello!", stopped_early=True)
    assert [(m.role, m.content) for m in conversation.messages] == [("user", "Hi"), ("assistant", "Hello!")]
    assert answer.stopped_early
    assert conversation.engine_messages() == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def test_a_blank_system_prompt_and_empty_turns_are_not_sent():
    conversation = Conversation(system_prompt="   ")
    conversation.add("user", "Hi")
    conversation.add("assistant", "", stopped_early=True)
    assert conversation.engine_messages() == [{"role": "user", "content": "Hi"}]


def test_a_message_role_is_checked():
    with pytest.raises(ChatError, match="role must be one of"):
        Message("bot", "hi")


# --- the tree ---

def test_regenerate_keeps_the_first_answer_as_a_sibling():
    conversation, question, first, second = chat_with_two_answers()
    assert [m.content for m in conversation.messages] == ["What is 2+2?", "4"]
    assert conversation.siblings(second) == [first, second]
    assert conversation.branch_position(second) == (2, 2)
    assert conversation.branch_position(first.id) == (1, 2)


def test_switching_branches_shows_the_other_thread():
    conversation, question, first, second = chat_with_two_answers()
    leaf = conversation.select(first.id)
    assert leaf == first
    assert [m.content for m in conversation.messages] == ["What is 2+2?", "5"]


def test_selecting_a_message_follows_its_newest_replies_to_a_leaf():
    conversation, question, first, second = chat_with_two_answers()
    conversation.select(first.id)
    follow_up = conversation.add("user", "Are you sure?")
    reply = conversation.add("assistant", "Sorry, 4.")
    conversation.select(second.id)
    assert conversation.messages[-1] == second
    assert conversation.select(question.id) == second  # the newest reply at each step
    assert conversation.select(first.id) == reply
    assert conversation.path_to(reply.id) == [question, first, follow_up, reply]


def test_edit_and_resend_keeps_the_original_question_reachable():
    conversation = Conversation()
    original = conversation.add("user", "Tell me a joke")
    conversation.add("assistant", "Why did the chicken...")
    edited = conversation.edit(original.id, "Tell me a pun")
    assert edited.parent_id is None and edited.role == "user"
    assert [m.content for m in conversation.messages] == ["Tell me a pun"]
    assert [m.content for m in conversation.siblings(edited)] == ["Tell me a joke", "Tell me a pun"]
    conversation.select(original.id)
    assert [m.content for m in conversation.messages] == ["Tell me a joke", "Why did the chicken..."]
    assert len(conversation.all_messages()) == 3


def test_engine_messages_for_a_regenerate_stop_at_the_question():
    conversation, question, first, second = chat_with_two_answers()
    assert conversation.engine_messages(question.id) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]


def test_other_branches_never_reach_the_engine():
    conversation, question, first, second = chat_with_two_answers()
    contents = [m["content"] for m in conversation.engine_messages()]
    assert "5" not in contents and "4" in contents


def test_update_replaces_a_streamed_answer():
    conversation = Conversation()
    conversation.add("user", "Hi")
    answer = conversation.add("assistant", "")
    stats = MessageStats(ttft_seconds=0.12, tokens_per_second=40.0, completion_tokens=3, stop_reason="stop")
    finished = conversation.update(answer.id, content="Hello!", stats=stats)
    assert conversation.messages[-1] == finished
    assert finished.stats == stats and finished.id == answer.id


def test_unknown_messages_and_dangling_parents_are_refused():
    conversation = Conversation()
    with pytest.raises(ChatError, match="no message"):
        conversation.select("nope")
    with pytest.raises(ChatError, match="not earlier"):
        conversation.add("user", "hi", parent_id="nope")


def test_restore_rebuilds_the_tree_and_falls_back_to_the_newest_leaf():
    conversation, question, first, second = chat_with_two_answers()
    restored = Conversation.restore(conversation.all_messages(), id=conversation.id, current_leaf_id="gone")
    assert restored.messages[-1] == second
    restored = Conversation.restore(conversation.all_messages(), current_leaf_id=first.id)
    assert restored.messages[-1] == first


# --- titles ---

def test_the_first_question_titles_the_conversation():
    conversation = Conversation()
    conversation.add("user", "\n  How do   I sort a list in Python?\nThanks")
    conversation.add("user", "Another question")
    assert conversation.title == "How do I sort a list in Python?"


def test_long_titles_are_cut_at_a_word():
    title = suggest_title("word " * 40)
    assert len(title) <= 61 and title.endswith("…") and "wor…" not in title


# --- sampling ---

def test_presets_are_data_and_recognised():
    assert set(PRESETS) == {"Precise", "Balanced", "Creative"}
    assert PRESETS["Precise"].temperature < PRESETS["Balanced"].temperature < PRESETS["Creative"].temperature
    assert preset_name(replace(PRESETS["Creative"], max_tokens=77)) == "Creative"
    assert preset_name(replace(PRESETS["Balanced"], temperature=0.33)) == CUSTOM_PRESET
    assert Conversation().sampling == PRESETS["Balanced"]


def test_sampling_values_match_the_engine_settings_fields():
    from core.engine.protocol import SamplingSettings

    settings = SamplingSettings(**PRESETS["Precise"].as_dict())
    assert settings.temperature == PRESETS["Precise"].temperature


@pytest.mark.parametrize("change, words", [
    ({"temperature": -1}, "between 0 and 5"), ({"top_p": 1.5}, "top_p"), ({"top_k": 2.5}, "whole number"),
    ({"max_tokens": 0}, "at least 1"), ({"temperature": "hot"}, "must be a number"),
    ({"seed": -3}, "seed"), ({"min_p": float("nan")}, "min_p")])
def test_bad_sampling_values_are_refused_with_a_sentence(change, words):
    with pytest.raises(ChatError, match=words):
        SamplingValues(**change)


def test_sampling_round_trips_through_a_dict_and_refuses_unknown_keys():
    values = SamplingValues(temperature=0.3, seed=42)
    assert SamplingValues.from_dict(values.as_dict()) == values
    with pytest.raises(ChatError, match="Unknown sampling setting"):
        SamplingValues.from_dict({"temprature": 1.0})


# --- stats ---

def test_stats_come_from_the_engine_answer_stats():
    @dataclass
    class EngineStats:  # the shape of core.engine.protocol.AnswerStats
        ttft_seconds: float = 0.2
        tokens_per_second: float = 33.0
        prompt_tokens: int = 10
        completion_tokens: int = 20
        stop_reason: str = "cancelled"
        context_used: int = 30
        context_size: int = 4096
        reused_prefix_tokens: int = 5

    stats = MessageStats.from_engine(EngineStats())
    assert stats == MessageStats(0.2, 33.0, 10, 20, "cancelled", 30, 4096)
    assert MessageStats.from_dict(stats.as_dict()) == stats


def test_context_messages_is_the_policy_function():
    thread = [Message("user", "a"), Message("assistant", "b")]
    assert context_messages("", thread) == [{"role": "user", "content": "a"},
                                            {"role": "assistant", "content": "b"}]


def test_stats_come_from_the_real_engine_answer_stats():
    from core.engine.protocol import AnswerStats

    engine = AnswerStats(prompt_tokens=12, completion_tokens=30, ttft_seconds=0.05, prompt_tokens_per_second=900.0,
                         tokens_per_second=95.0, context_used=42, context_size=8192, stop_reason="length",
                         reused_prefix_tokens=0, dropped_messages=0)
    assert MessageStats.from_engine(engine) == MessageStats(0.05, 95.0, 12, 30, "length", 42, 8192)


# --- thinking and tool calls ---

def thinking_chat() -> Conversation:
    conversation = Conversation(system_prompt="Be brief.")
    conversation.add("user", "Weather in Oslo?")
    conversation.add("assistant", "", reasoning="The user wants the weather. Call the tool.",
                     tool_calls=(ToolCall("call-1", "get_weather", '{"city": "Oslo"}'),),
                     stats=MessageStats(completion_tokens=30, reasoning_tokens=22, reasoning_seconds=1.5))
    conversation.add("user", "And in a word?")
    conversation.add("assistant", "Cold.", reasoning="One word: cold.",
                     stats=MessageStats(completion_tokens=9, reasoning_tokens=7))
    return conversation


def test_earlier_answers_reach_the_engine_with_their_thinking_and_tool_calls_apart_from_the_text():
    messages = thinking_chat().engine_messages()
    assert messages[2] == {"role": "assistant", "content": "", "reasoning_content":
                           "The user wants the weather. Call the tool.",
                           "tool_calls": [{"id": "call-1", "type": "function",
                                           "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    assert messages[4] == {"role": "assistant", "content": "Cold.", "reasoning_content": "One word: cold."}
    assert all("reasoning_content" not in m and "tool_calls" not in m for m in messages if m["role"] != "assistant")


def test_an_answer_that_only_thought_is_not_sent_back():
    conversation = Conversation()
    conversation.add("user", "Hi")
    conversation.add("assistant", "", stopped_early=True, reasoning="Let me think about gre")
    assert conversation.engine_messages() == [{"role": "user", "content": "Hi"}]


def test_stats_keep_thinking_and_answer_tokens_apart():
    stats = MessageStats.from_engine(_engine_stats(completion_tokens=40, reasoning_tokens=25, reasoning_seconds=3.2))
    assert (stats.reasoning_tokens, stats.answer_tokens, stats.reasoning_seconds) == (25, 15, 3.2)
    assert MessageStats.from_dict(stats.as_dict()) == stats
    assert MessageStats.from_dict({"completion_tokens": 5}).reasoning_tokens == 0   # stats written before


def _engine_stats(**changes):
    from core.engine.protocol import AnswerStats

    values = dict(prompt_tokens=12, completion_tokens=30, ttft_seconds=0.05, prompt_tokens_per_second=900.0,
                  tokens_per_second=95.0, context_used=42, context_size=8192, stop_reason="stop",
                  reused_prefix_tokens=0, dropped_messages=0)
    return AnswerStats(**{**values, **changes})


def test_earlier_thinking_the_template_left_out_counts_as_saved():
    thread = thinking_chat().messages
    first, last = thread[1], thread[3]
    without_thoughts = "<|user|>Weather in Oslo?<|assistant|><tool_call>…<|user|>And in a word?<|assistant|>"
    assert reasoning_left_out([first], without_thoughts) == 22
    assert reasoning_left_out([first], without_thoughts + first.reasoning) == 0    # the template kept it
    dropped = "<|user|>And in a word?<|assistant|>"
    assert reasoning_left_out([Message("assistant", "Sunny.", reasoning="Sun in forecast.",
                                       stats=MessageStats(reasoning_tokens=5))], dropped) == 0
    assert reasoning_left_out([last], "") == 0       # its text is not in the prompt: the engine dropped it


def test_the_thinking_setting_is_checked_and_round_trips():
    setting = ThinkingSetting(enabled=False, effort="high")
    assert ThinkingSetting.from_dict(setting.as_dict()) == setting
    with pytest.raises(ChatError, match="effort must be one of low, medium, high"):
        ThinkingSetting(effort="maximal")
    with pytest.raises(ChatError, match="switched on"):
        ThinkingSetting(enabled="yes")
    with pytest.raises(ChatError, match="Unknown thinking setting"):
        ThinkingSetting.from_dict({"budget": 5})


def test_tool_calls_are_checked_when_read_back():
    call = ToolCall("c1", "search", '{"q": "x"}')
    assert ToolCall.from_dict(call.as_dict()) == call
    with pytest.raises(ChatError, match="exactly the fields"):
        ToolCall.from_dict({"id": "c1", "name": "search"})
    with pytest.raises(ChatError, match="arguments must be text"):
        ToolCall.from_dict({"id": "c1", "name": "search", "arguments": {"q": "x"}})
