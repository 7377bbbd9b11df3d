"""Streaming answer text: whole characters only, stop strings never shown."""
from core.engine.answer_text import AnswerText


def stream(pieces, stop=()):
    answer = AnswerText(stop)
    shown = [answer.feed(piece) for piece in pieces]
    shown.append(answer.finish())
    return answer, [text for text in shown if text]


def test_a_character_split_across_tokens_arrives_whole():
    emoji = "😀".encode()
    answer, shown = stream([b"Hi ", emoji[:1], emoji[1:3], emoji[3:], b"!"])
    assert shown == ["Hi ", "😀", "!"]
    assert answer.text == "Hi 😀!"
    assert all("\ufffd" not in text for text in shown)


def test_streaming_equals_decoding_everything_at_once_for_any_split():
    data = "naïve café — 東京 😀👍🏽".encode()
    for size in range(1, 6):
        pieces = [data[i:i + size] for i in range(0, len(data), size)]
        answer, shown = stream(pieces)
        assert "".join(shown) == data.decode() == answer.text


def test_an_unfinished_character_at_the_end_is_dropped_not_garbled():
    answer, shown = stream([b"ok ", "😀".encode()[:2]])
    assert answer.text == "ok "


def test_a_stop_string_is_cut_off_even_when_it_arrives_in_pieces():
    answer, shown = stream([b"Paris.", b"<|im", b"_end|>", b" more"], stop=("<|im_end|>",))
    assert answer.text == "Paris."
    assert answer.stopped
    assert "".join(shown) == "Paris."


def test_text_that_only_looked_like_a_stop_string_is_released():
    answer, shown = stream([b"a <", b"b> c"], stop=("<|im_end|>",))
    assert answer.text == "a <b> c"
    assert not answer.stopped


def test_held_text_is_released_at_the_end():
    answer, shown = stream([b"x ##"], stop=("###",))
    assert answer.text == "x ##"
    assert shown == ["x ", "##"]
