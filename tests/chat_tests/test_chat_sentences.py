"""Cutting an LLM's token stream into sentences (talker.sentences): what TTS will be asked to say."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_standin.server import tokenize
from talker.sentences import SentenceCutter


def cut(text: str, chunks: int | str = 1, **limits: int) -> list[str]:
    """Feed `text` in pieces of `chunks` characters ("tokens": the stand-in's tokens), then flush."""
    cutter = SentenceCutter(**limits)
    size = 0 if chunks == "tokens" else int(chunks)
    pieces = tokenize(text) if not size else [text[i:i + size] for i in range(0, len(text), size)]
    out: list[str] = []
    for piece in pieces:
        out += cutter.feed(piece)
    return out + cutter.flush()


@pytest.mark.parametrize("chunks", [1, 3, "tokens", 1000])
def test_sentences_chinese(chunks: int | str) -> None:
    text = "你好！我是数字人。今天天气很好；我们去公园吧？好的。"
    assert cut(text, chunks) == ["你好！", "我是数字人。", "今天天气很好；", "我们去公园吧？", "好的。"]


@pytest.mark.parametrize("chunks", [1, 2, "tokens", 1000])
def test_sentences_english_keep_decimals_abbreviations_and_initials(chunks: int | str) -> None:
    text = "It costs 3.5 dollars, or 12.75 yuan. Dr. Smith met J. K. Rowling at 9 a.m. on Monday, e.g. today! Really?"
    assert cut(text, chunks) == [
        "It costs 3.5 dollars, or 12.75 yuan.",
        "Dr. Smith met J. K. Rowling at 9 a.m. on Monday, e.g. today!",
        "Really?",
    ]


def test_sentences_a_word_then_a_dot_ends_the_sentence_when_the_dot_arrives() -> None:
    text = "Wait... what happened at example.com? The end."
    assert cut(text, 1000) == ["Wait...", "what happened at example.com?", "The end."]
    # Latency over beauty: streamed, "Wait." goes to TTS at its first dot; a dot arriving alone splits a domain.
    assert cut(text, "tokens") == ["Wait.", "what happened at example.", "com?", "The end."]


@pytest.mark.parametrize("chunks", [1, "tokens", 1000])
def test_sentences_mixed_chinese_and_english(chunks: int | str) -> None:
    text = "好的，我明白了。The stand-in mixes languages. 每个句子都会尽快送去合成语音。Done!"
    assert cut(text, chunks) == ["好的，我明白了。", "The stand-in mixes languages.", "每个句子都会尽快送去合成语音。",
                                 "Done!"]


def test_sentences_closing_quotes_and_repeated_marks_stay_when_they_arrived_together() -> None:
    assert cut("他说：“好的！”然后走了。Really?! Yes.", 1000) == ["他说：“好的！”", "然后走了。", "Really?!", "Yes."]
    # Arriving late (after their sentence went to TTS), they are dropped rather than spoken alone.
    assert cut("他说：“好的！”然后走了。", 1) == ["他说：“好的！", "然后走了。"]


def test_sentences_a_number_at_the_end_of_a_delta_waits_for_the_next_one() -> None:
    cutter = SentenceCutter()
    assert cutter.feed("It costs 3.") == []  # "3." might go on as "3.5"
    assert cutter.feed("5 yuan. Next") == ["It costs 3.5 yuan."]
    assert cutter.flush() == ["Next"]
    assert cut("The answer is 42.", 1) == ["The answer is 42."]  # the end of the stream decides
    assert cut("1. Buy milk\n2. Call mum\n", 1) == ["1. Buy milk", "2. Call mum"]


def test_sentences_a_sentence_ends_as_soon_as_its_mark_arrives() -> None:
    cutter = SentenceCutter()
    assert cutter.feed("你好") == []
    assert cutter.feed("！") == ["你好！"]  # no waiting for the next token: the first audio starts now
    assert cutter.feed(" Hello") == []
    assert cutter.feed(".") == ["Hello."]
    assert cutter.pending == ""


def test_sentences_long_ones_are_cut_at_a_comma_or_space_and_the_first_one_shorter() -> None:
    english = "This is a very long sentence without any full stop that goes on and on and on forever and ever"
    assert cut(english, "tokens", first_max_chars=40, max_chars=60) == [
        "This is a very long sentence without", "any full stop that goes on and on and on forever and ever"]
    chinese = "这是一个很长很长的句子，没有句号一直说下去，说了很久很久，还是没有结束的意思，一直一直说"
    assert cut(chinese, 1, first_max_chars=20, max_chars=30) == [
        "这是一个很长很长的句子，", "没有句号一直说下去，说了很久很久，还是没有结束的意思，", "一直一直说"]
    assert cut("一" * 50, 1, first_max_chars=20, max_chars=25) == ["一" * 20, "一" * 25, "一" * 5]


SPEAKABLE = re.compile(r"[\w]", re.UNICODE)
text_pieces = st.lists(
    st.sampled_from(["你好", "。", "！", "？", "；", "，", "Hello", " world", ".", "!", "?", " ", "3", ".5", "Dr", "”",
                     "e.g", "\n", "数字人", " and", ",", "..."]),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(pieces=text_pieces, first=st.integers(4, 30), rest=st.integers(4, 80))
def test_sentences_lose_nothing_speakable_and_respect_the_limits(pieces: list[str], first: int, rest: int) -> None:
    cutter = SentenceCutter(first_max_chars=first, max_chars=rest)
    sentences: list[str] = []
    for piece in pieces:
        sentences += cutter.feed(piece)
    sentences += cutter.flush()
    text = "".join(pieces)
    assert SPEAKABLE.findall("".join(sentences)) == SPEAKABLE.findall(text)  # every word character, in order
    assert all(s and s == s.strip() for s in sentences)
    if sentences:
        assert len(sentences[0]) <= first
        assert all(len(s) <= rest for s in sentences[1:])


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.sampled_from(["你好", "。", "！", "？", "；", "，", "Hello", " world", "!", "?", " ", "3",
                                        "\n", "数字人", " and", ","]), max_size=60),
       first=st.integers(4, 30), rest=st.integers(4, 80))
def test_sentences_do_not_depend_on_how_the_stream_is_split(pieces: list[str], first: int, rest: int) -> None:
    """Without "." (whose meaning depends on what follows) the cut is the same however the text arrives: whole,
    character by character, or as the LLM's deltas; only repeated marks arriving late ("。。") may be dropped."""
    text = "".join(pieces)
    limits = {"first_max_chars": first, "max_chars": rest}

    def words(sentences: list[str]) -> list[str]:
        return [sentence.rstrip("。！？；!?") for sentence in sentences]

    whole = words(cut(text, 1000, **limits))
    assert words(cut(text, 1, **limits)) == whole
    cutter = SentenceCutter(**limits)
    assert words([sentence for piece in pieces for sentence in cutter.feed(piece)] + cutter.flush()) == whole
