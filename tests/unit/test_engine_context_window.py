"""Fitting a conversation into the context: system prompt kept, oldest turns dropped first."""
import pytest

from core.engine.context_window import HEADROOM, answer_reserve, fit_conversation
from core.engine.errors import PromptTooLong


def render(messages):
    return "".join(f"<{m['role']}> {m['content']} " for m in messages)


def tokenize(text):
    return text.split()


def conversation(turns, words=10):
    messages = [{"role": "system", "content": "be brief"}]
    for turn in range(turns):
        messages.append({"role": "user", "content": " ".join([f"q{turn}"] * words)})
        messages.append({"role": "assistant", "content": " ".join([f"a{turn}"] * words)})
    messages.append({"role": "user", "content": "last question"})
    return messages


def test_a_conversation_that_fits_is_untouched():
    messages = conversation(2)
    fitted = fit_conversation(messages, budget=1000, render=render, tokenize=tokenize)
    assert fitted.dropped_messages == 0
    assert fitted.kept_messages == len(messages)
    assert fitted.prompt == render(messages)


def test_the_oldest_turns_go_first_and_the_system_prompt_stays():
    messages = conversation(10)
    full = len(tokenize(render(messages)))
    fitted = fit_conversation(messages, budget=full // 2, render=render, tokenize=tokenize)
    assert len(fitted.tokens) <= full // 2
    assert fitted.prompt.startswith("<system> be brief")
    assert fitted.prompt.rstrip().endswith("last question")
    assert "q0" not in fitted.prompt and "a9" in fitted.prompt
    assert fitted.dropped_messages + fitted.kept_messages == len(messages)


def test_the_kept_part_starts_with_a_user_message():
    messages = conversation(6)
    for budget in range(20, 160, 7):
        try:
            fitted = fit_conversation(messages, budget=budget, render=render, tokenize=tokenize)
        except PromptTooLong:
            continue
        after_system = fitted.prompt.split("<system> be brief ", 1)[1]
        assert after_system.startswith("<user>")


def test_trimming_leaves_headroom_so_the_next_turns_fit_as_they_are():
    messages = conversation(8)
    budget = 80
    fitted = fit_conversation(messages, budget=budget, render=render, tokenize=tokenize)
    assert len(fitted.tokens) <= budget * (1 - HEADROOM)
    one_more = [messages[0]] + messages[len(messages) - fitted.kept_messages - 1:]
    assert len(tokenize(render(one_more))) > budget * (1 - HEADROOM) or one_more[1]["role"] == "assistant"


def test_a_continuing_conversation_keeps_dropping_the_same_messages():
    messages = conversation(8)
    budget = 80
    first = fit_conversation(messages, budget=budget, render=render, tokenize=tokenize)
    messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "and then"}]
    second = fit_conversation(messages, budget=budget, render=render, tokenize=tokenize,
                              at_least_dropped=first.dropped_messages)
    assert second.dropped_messages == first.dropped_messages
    assert second.prompt.startswith(first.prompt.rsplit("<user> last question", 1)[0])


def test_a_last_message_longer_than_the_context_is_refused_with_a_sentence():
    messages = [{"role": "user", "content": "word " * 500}]
    with pytest.raises(PromptTooLong, match="needs .* tokens"):
        fit_conversation(messages, budget=100, render=render, tokenize=tokenize)


def test_the_answer_reserve_never_takes_more_than_half_the_context():
    assert answer_reserve(4096, 512) == 512
    assert answer_reserve(1024, 4000) == 512
