"""Incremental speech: text pieces, engines that hand audio on piece by piece, encoders that keep up."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from talker.audio_formats import PCM_RATE, LinearResampler, open_encoder, streaming_wav_header
from talker.engine_contract import Cancelled
from talker.pipeline import Pipeline
from talker.streaming import StreamSink
from talker.tts import FIRST_PIECES, SpeechStream, SynthesizedSpeech
from talker.tts.segment import split_for_streaming

LONG = ("Good morning, everyone. The deployment finished without errors and every check is green again; "
        "the release notes are online, the dashboards look calm and nobody has been paged since midnight.")


def words(piece: str) -> int:
    return len(piece.split())


def test_pieces_are_the_text_in_order_with_a_short_first_piece() -> None:
    text = "This first sentence has far more than six words in it, really. Short. " + LONG
    pieces = split_for_streaming(text, first_max_words=6, max_words=12)
    assert " ".join(pieces) == " ".join(text.split())  # nothing added, dropped or reordered
    assert words(pieces[0]) <= 6 and all(words(p) <= 12 for p in pieces)
    assert pieces[:2] == ["This first sentence has far more", "than six words in it, really."]  # sentence end
    assert "Short." in pieces
    # Over budget, a piece ends at its last clause mark rather than mid-clause when it has one.
    assert "the release notes are online," in pieces


def test_pieces_cut_at_the_budget_without_punctuation_and_per_character_in_chinese() -> None:
    assert split_for_streaming("one two three four five six seven", first_max_words=3, max_words=2) == [
        "one two three", "four five", "six seven"]
    assert split_for_streaming("你好，我是一个数字人。今天天气很好", first_max_words=4, max_words=5) == [
        "你好，", "我是一个数", "字人。", "今天天气很", "好"]
    assert split_for_streaming("   ", first_max_words=3, max_words=3) == []


def test_first_piece_can_end_before_the_first_phrase_opener_after_three_words() -> None:
    def split(text: str, max_words: int = 20) -> list[str]:
        return split_for_streaming(text, first_max_words=6, max_words=max_words, first_phrase_words=3)

    report = "The deployment finished without errors and every check is green."
    assert split(report) == ["The deployment finished", "without errors and every check is green."]
    assert split_for_streaming(report, first_max_words=6, max_words=20) == [  # without the option: at the budget
        "The deployment finished without errors and", "every check is green."]
    assert split("Two alerts fired In the last hour.") == ["Two alerts fired", "In the last hour."]  # any case
    # An opener after fewer than three words is no place to cut; nor is a word that merely contains one.
    assert split("Disk usage on the database host is at eighty percent.") == [
        "Disk usage on the database host", "is at eighty percent."]
    assert split("The android fortune teller handed forward tickets.") == [
        "The android fortune teller handed forward", "tickets."]
    # A clause mark still comes first, and a first sentence within the budget stays whole.
    assert split("Good evening, this is the on-call digest for tonight.") == [
        "Good evening,", "this is the on-call digest for tonight."]
    assert split("Latency is back under the objective.") == ["Latency is back under the objective."]
    # Only the first piece: later ones end at their budget as before.
    assert split("one two three four and five six seven eight with nine", max_words=3) == [
        "one two three four", "and five six", "seven eight with", "nine"]


def test_espeak_stream_starts_with_a_short_piece_and_says_the_same_as_one_call(pipeline: Pipeline) -> None:
    whole = pipeline.synthesize(LONG, voice="en-us")
    stream = pipeline.stream_speech(LONG, voice="en-us")
    pieces = list(stream)
    assert stream.engine == "espeak" and stream.sample_rate == 22050 and len(pieces) >= 3
    assert len(pieces[0].samples) / 22050 < 2.0  # "Good morning, everyone." and its pause, of ~10 s
    assert abs(stream.audio_seconds - whole.audio_seconds) < 0.03 * whole.audio_seconds  # pauses kept
    marks = [m.start_s for p in pieces for m in p.phonemes]
    assert marks == sorted(marks) and 0 <= marks[0] and marks[-1] < stream.audio_seconds  # stream-relative
    assert marks[-1] > stream.audio_seconds - 1.0
    assert stream.tts_seconds > 0 and not stream.truncated


def test_espeak_and_piper_streams_stop_exactly_at_the_audio_limit(pipeline: Pipeline) -> None:
    piper = next(v.id for v in pipeline.voices() if v.engine == "piper")
    for voice in ("en-us", piper):
        stream = pipeline.stream_speech(LONG, voice=voice, max_seconds=2.0)
        samples = np.concatenate([p.samples for p in stream])
        assert len(samples) == 2 * stream.sample_rate and stream.truncated, voice
        whole = pipeline.synthesize(LONG, voice=voice, max_seconds=2.0)
        assert whole.truncated and whole.audio_seconds == 2.0, voice
    assert not pipeline.synthesize("Hi.", voice="en-us", max_seconds=2.0).truncated


def test_piper_first_piece_is_the_first_phrase(pipeline: Pipeline) -> None:
    # "The deployment finished" (about 1.4 s of speech), not the first six words (about 2.1 s): Piper's time to
    # first audio is proportional to the first piece's length.
    piper = next(v.id for v in pipeline.voices() if v.engine == "piper")
    stream = pipeline.stream_speech("The deployment finished without errors and every check is green.", voice=piper)
    pieces = [len(p.samples) / stream.sample_rate for p in stream]
    assert len(pieces) == 2 and 0.9 < pieces[0] < 1.8 and pieces[1] > pieces[0]


def test_piper_streams_sentence_by_sentence_and_stops_mid_sentence(pipeline: Pipeline) -> None:
    piper = next(v.id for v in pipeline.voices() if v.engine == "piper")
    stream = pipeline.stream_speech(LONG, voice=piper)
    first = next(stream)
    assert stream.engine == "piper" and 0.3 < len(first.samples) / stream.sample_rate < 2.5  # "Good morning, ..."
    rest = list(stream)
    assert len(rest) >= 2

    sentence = re.sub(r"[,;.]", "", LONG)  # one long run without a place to stop between sentences
    started = time.perf_counter()
    pipeline.synthesize(sentence, voice=piper)
    full_s = time.perf_counter() - started
    stop = threading.Event()
    threading.Timer(0.1 * full_s, stop.set).start()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        pipeline.synthesize(sentence, voice=piper, should_stop=stop.is_set)
    assert time.perf_counter() - started < 0.5 * full_s  # the onnxruntime run was terminated, not awaited


def test_resampler_in_chunks_equals_one_pass_and_keeps_the_pitch() -> None:
    rate = 22050
    t = np.arange(rate) / rate
    tone = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    one = LinearResampler(rate, PCM_RATE)(tone)
    chunked = LinearResampler(rate, PCM_RATE)
    parts = np.concatenate([chunked(tone[i:i + 1234]) for i in range(0, len(tone), 1234)])
    assert len(parts) == len(one) and np.max(np.abs(parts.astype(int) - one)) <= 1  # rounding only
    assert abs(len(one) - PCM_RATE) <= 1
    crossings = np.count_nonzero(np.diff(np.signbit(one.astype(np.int32))))
    assert abs(crossings / 2 - 440) <= 2


def test_wav_encoder_sends_the_header_with_the_first_audio() -> None:
    out: list[bytes] = []
    encoder = open_encoder("wav", 16000, out.append)
    encoder.feed(np.array([1, -2, 3], dtype=np.int16))
    encoder.feed(np.array([4], dtype=np.int16))
    encoder.finish()
    assert out[0] == streaming_wav_header(16000) + np.array([1, -2, 3], dtype="<i2").tobytes()
    assert len(out) == 2 and out[0][24:28] == (16000).to_bytes(4, "little")


def test_sink_holds_the_producer_back_and_releases_it_when_aborted() -> None:
    async def scenario() -> None:
        sink = StreamSink(asyncio.get_running_loop(), max_bytes=8)
        state: list[str] = []

        def produce() -> None:
            try:
                for _ in range(10):
                    sink.put(b"abcd")
                    state.append("put")
            except Cancelled:
                state.append("cancelled")

        thread = threading.Thread(target=produce)
        thread.start()
        assert await sink.take() in (b"abcd", b"abcdabcd")
        deadline = time.monotonic() + 5
        while sink.buffered_bytes < 8 and time.monotonic() < deadline:  # the producer refills to the bound
            await asyncio.sleep(0.01)
        assert sink.buffered_bytes == 8 and thread.is_alive()  # ... and waits there
        sink.abort()
        await asyncio.to_thread(thread.join, 5)
        assert state[-1] == "cancelled" and state.count("put") < 10

    asyncio.run(scenario())


def test_a_stream_already_speaking_lets_a_new_first_piece_go_first() -> None:
    made: list[str] = []

    def pieces(name: str) -> Iterator[SynthesizedSpeech]:
        for i in range(3):
            made.append(f"{name}{i}")
            yield SynthesizedSpeech(samples=np.zeros(100, dtype=np.int16), sample_rate=1000, engine="espeak")

    speaking = SpeechStream(engine="espeak", sample_rate=1000, characters=1, pieces=pieces("a"))
    next(speaking)  # its first piece is out: from now on it gives way
    first_piece_started, first_piece_done = threading.Event(), threading.Event()

    def new_stream_first_piece() -> None:
        with FIRST_PIECES.making_first_piece():
            first_piece_started.set()
            first_piece_done.wait(5)
            made.append("b0")

    other = threading.Thread(target=new_stream_first_piece)
    other.start()
    assert first_piece_started.wait(5)
    later = threading.Thread(target=lambda: next(speaking))
    later.start()
    first_piece_done.set()
    later.join(5)
    other.join(5)
    assert made == ["a0", "b0", "a1"]  # a1 waited for b0

    # The pause is bounded: with a first piece that never ends, the speaking stream still goes on.
    with FIRST_PIECES.making_first_piece():
        started = time.monotonic()
        next(speaking)
        assert FIRST_PIECES.MAX_PAUSE_S <= time.monotonic() - started < FIRST_PIECES.MAX_PAUSE_S + 2


def _wait_for(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_synth_lock_serves_a_first_piece_before_waiting_later_pieces() -> None:
    from talker.tts.espeak import SynthLock

    lock = SynthLock()
    order: list[str] = []

    def take(name: str, urgent: bool) -> None:
        with lock.hold(urgent=urgent):
            order.append(name)

    later = threading.Thread(target=take, args=("later piece", False))
    first = threading.Thread(target=take, args=("first piece", True))
    with lock.hold():
        later.start()
        _wait_for(lambda: lock.waiting() == 1, "the later piece to wait")
        first.start()
        _wait_for(lambda: lock.waiting() == 2, "the first piece to wait")
    first.join(10)
    later.join(10)
    assert order == ["first piece", "later piece"]  # the later one still gets it (no starvation once served)
    with lock.hold():  # free again
        assert lock.waiting() == 0


def test_a_new_stream_gets_espeak_before_another_requests_long_synthesis(pipeline: Pipeline) -> None:
    # Real espeak-ng: a whole paragraph (tens of milliseconds of synthesis) waits for the lock first, a stream's
    # first piece second; once the lock is free, the stream's first audio comes before the paragraph is done.
    from talker.tts.espeak import _LOCK, EspeakEngine
    from talker.tts.prosody import prosody_for

    engine = EspeakEngine()
    engine.load()
    done: list[str] = []

    def paragraph() -> None:
        engine.synthesize(LONG * 6, "en-us", prosody_for())
        done.append("paragraph")

    def stream() -> None:
        next(iter(engine.stream(LONG, "en-us", prosody_for())))
        done.append("first piece")

    threads = [threading.Thread(target=paragraph), threading.Thread(target=stream)]
    with _LOCK.hold():  # released whatever happens: other tests use the same library lock
        threads[0].start()
        _wait_for(lambda: _LOCK.waiting() == 1, "the paragraph to wait")
        threads[1].start()
        _wait_for(lambda: _LOCK.waiting() == 2, "the stream to wait")
    for t in threads:
        t.join(30)
    assert done == ["first piece", "paragraph"]


def test_speakable_maps_fullwidth_digits_and_letters_only_and_keeps_every_position() -> None:
    from talker.tts.segment import speakable

    text = "电话：１２３４５，ＧＰＵ ｏｋ！（Ａ９）。"
    said = speakable(text)
    assert said == "电话：12345，GPU ok！（A9）。"  # fullwidth punctuation is left as it is
    assert len(said) == len(text)
    assert speakable("０９ＡＺａｚ") == "09AZaz"  # both ends of each range
    assert speakable("／＠［｀｛") == "／＠［｀｛"  # the fullwidth signs between and around them are not letters



def test_split_long_clauses_cuts_only_a_clause_whose_numbers_expand_too_far() -> None:
    from talker.tts.segment import CALL_MAX_WORDS, split_long_clauses, spoken_words

    assert (spoken_words("word"), spoken_words("2024"), spoken_words("$1,234."), spoken_words("第3")) == (1, 8, 8, 2)
    numbers = " ".join(["2024"] * 100)  # one clause of about 300 spoken words: espeak-ng dropped its last 40 %
    pieces = split_long_clauses(numbers)
    assert " ".join(pieces) == numbers
    assert [len(p.split()) for p in pieces] == [12] * 8 + [4]  # 12 x 8 = 96 <= CALL_MAX_WORDS < 13 x 8
    assert CALL_MAX_WORDS == 100
    # Clause and sentence marks end a clause: a text of many short ones stays one call, however long.
    for text in ["2024, " * 80, "2024. " * 80, " ".join(["word"] * 100), "你好。" * 100, ""]:
        assert split_long_clauses(text) == [text]
    assert split_long_clauses(" ".join(["word"] * 101)) == [" ".join(["word"] * 100), "word"]


def test_long_digit_runs_are_spelled_out_and_cut_into_calls() -> None:
    from talker.tts.segment import CALL_MAX_WORDS, LONG_DIGIT_RUN, spell_long_digit_runs, synthesis_calls

    assert LONG_DIGIT_RUN == 32
    number = "1234567890" * 3 + "12"  # 32 digits: espeak-ng still reads it as one number, in full
    assert spell_long_digit_runs(f"ID {number}.") == f"ID {number}."
    run = number + "3"  # 33: spelled out
    assert spell_long_digit_runs(f"ID {run}, ok") == f"ID {' '.join(run)}, ok"
    assert spell_long_digit_runs(f"A{run}B {run}") == f"A{' '.join(run)}B {' '.join(run)}"  # each run, in words too
    fullwidth = run.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    assert synthesis_calls(f"订单{fullwidth}。") == [f"订单{' '.join(run)}。"]  # speakable first, then spelled
    calls = synthesis_calls("7" * 240)  # each digit counts two spoken words: 50 digits a call
    assert [len(c.split()) for c in calls] == [CALL_MAX_WORDS // 2] * 4 + [40]
    assert " ".join(calls) == " ".join("7" * 240)
    assert synthesis_calls("Hello there.") == ["Hello there."]

