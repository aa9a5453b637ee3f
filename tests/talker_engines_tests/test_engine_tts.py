"""Speech from the real engines: espeak-ng (English, Mandarin) and Piper (bundled and mounted voices)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from talker.engine_contract import Cancelled, UnknownVoice
from talker.pipeline import Pipeline
from talker.tts.espeak import EspeakEngine
from talker.tts.piper import PiperEngine, bundled_voice_dir
from talker.tts.prosody import prosody_for
from talker_engines_tests.media import median_pitch_hz, parse_wav

ENGLISH = "Hello world, this is a test."
CHINESE = "你好，世界。今天天气很好。"
LONG_ENGLISH = " ".join(["The quick brown fox jumps over the lazy dog."] * 10)
PIPER_VOICE = "piper:en_US-joe-medium"
SILENCE_RMS = 200  # int16 units; real speech is in the thousands


def test_engine_english_speech_is_a_plausible_wav(pipeline: Pipeline) -> None:
    out = pipeline.synthesize(ENGLISH, voice="en-us")
    wav = parse_wav(out.wav)
    assert (wav.rate, wav.channels, wav.width) == (22050, 1, 2)
    assert out.sample_rate == 22050 and out.engine == "espeak"
    assert 1.0 <= wav.seconds <= 4.0
    assert wav.seconds == pytest.approx(out.audio_seconds, abs=1e-3)
    assert wav.rms > SILENCE_RMS
    assert out.characters == len(ENGLISH)
    assert out.timings["tts"] > 0


def test_engine_mandarin_is_spoken_as_mandarin(pipeline: Pipeline) -> None:
    zh = pipeline.synthesize(CHINESE, voice="cmn")
    en = pipeline.synthesize(ENGLISH, voice="en-us")
    wav = parse_wav(zh.wav)
    assert wav.rate == 22050 and wav.rms > SILENCE_RMS
    # 11 syllables: about 2-5 s. Reading tone numbers as English words (Debian's 1.51 bug) would be far longer.
    assert 1.5 <= wav.seconds <= 5.0
    assert zh.wav != en.wav
    # The phoneme stream starts with pinyin "ni hao" (n, i, x), not English letter names.
    phonemes = [p.phoneme.lstrip("'") for p in EspeakEngine().synthesize("你好", "cmn", prosody_for()).phonemes]
    assert phonemes[:3] == ["n", "i", "X"]


def test_engine_voice_catalogue_and_unknown_voice(pipeline: Pipeline) -> None:
    voices = {v.id: v for v in pipeline.voices()}
    assert voices["en-us"].language == "en-US" and voices["en-us"].engine == "espeak"
    assert voices["cmn"].language == "zh-CN"
    assert voices[PIPER_VOICE].engine == "piper" and voices[PIPER_VOICE].language == "en-US"
    assert pipeline.has_voice("cmn") and not pipeline.has_voice("klingon")
    with pytest.raises(UnknownVoice):
        pipeline.synthesize("hi", voice="klingon")
    with pytest.raises(UnknownVoice):
        pipeline.synthesize("hi", voice="piper:nope")
    assert pipeline.synthesize("hi").engine == pipeline.default_engine == "espeak"


def test_engine_speed_and_emotion_change_the_speech(pipeline: Pipeline) -> None:
    def seconds(**kw: object) -> float:
        return parse_wav(pipeline.synthesize(LONG_ENGLISH, voice="en-us", **kw).wav).seconds  # type: ignore[arg-type]

    slow, normal, fast = seconds(speed=0.5), seconds(), seconds(speed=2.0)
    assert slow > normal > fast
    assert slow / fast > 2.5
    assert seconds(emotion="sad") > normal * 1.1  # sadness is slower

    happy = parse_wav(pipeline.synthesize(LONG_ENGLISH, voice="en-us", emotion="happy").wav)
    sad = parse_wav(pipeline.synthesize(LONG_ENGLISH, voice="en-us", emotion="sad").wav)
    assert median_pitch_hz(happy.samples, happy.rate) > 1.15 * median_pitch_hz(sad.samples, sad.rate)
    angry = parse_wav(pipeline.synthesize(LONG_ENGLISH, voice="en-us", emotion="angry").wav)
    assert angry.rms > 1.3 * sad.rms


def test_engine_speed_outside_range_is_clamped(pipeline: Pipeline) -> None:
    # espeak-ng is not bit-reproducible (its noise source and oscillator phase carry over between calls),
    # so compare durations, not bytes.
    at_limit = parse_wav(pipeline.synthesize(LONG_ENGLISH, voice="en-us", speed=2.0).wav).seconds
    beyond = parse_wav(pipeline.synthesize(LONG_ENGLISH, voice="en-us", speed=50.0).wav).seconds
    assert beyond == pytest.approx(at_limit, rel=0.01)


def test_engine_espeak_cancellation_stops_and_leaves_engine_usable(pipeline: Pipeline) -> None:
    polls = 0

    def stop_after_three() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    with pytest.raises(Cancelled):
        pipeline.synthesize(LONG_ENGLISH, voice="en-us", should_stop=stop_after_three)
    assert polls == 4  # it stopped at the first poll that said so, not at the end of the text
    after = EspeakEngine().synthesize(LONG_ENGLISH, "en-us", prosody_for())
    assert after.seconds > 15 and after.phonemes[-1].start_s > 15  # the next call speaks the whole text again


def test_engine_espeak_is_safe_from_many_threads() -> None:
    engine = EspeakEngine()

    def fingerprint(voice: str, text: str) -> tuple[list[str], float]:
        speech = engine.synthesize(text, voice, prosody_for())
        return [p.phoneme for p in speech.phonemes], speech.seconds

    expected = {v: fingerprint(v, t) for v, t in (("en-us", ENGLISH), ("cmn", CHINESE))}
    results: list[tuple[str, tuple[list[str], float]]] = []
    errors: list[BaseException] = []

    def work(voice: str, text: str) -> None:
        try:
            for _ in range(5):
                results.append((voice, fingerprint(voice, text)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=args) for args in [("en-us", ENGLISH), ("cmn", CHINESE)] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(results) == 20
    for voice, (phonemes, seconds) in results:  # interleaved calls would mix phonemes and lengths
        assert phonemes == expected[voice][0]
        assert seconds == pytest.approx(expected[voice][1], abs=0.01)


def test_engine_piper_bundled_voice_speaks(pipeline: Pipeline) -> None:
    out = pipeline.synthesize(ENGLISH, voice=PIPER_VOICE)
    wav = parse_wav(out.wav)
    assert out.engine == "piper" and wav.rate == 22050
    assert 1.0 <= wav.seconds <= 4.0 and wav.rms > SILENCE_RMS
    fast = parse_wav(pipeline.synthesize(ENGLISH, voice=PIPER_VOICE, speed=2.0).wav).seconds
    slow = parse_wav(pipeline.synthesize(ENGLISH, voice=PIPER_VOICE, speed=0.5).wav).seconds
    assert slow > 2.5 * fast


def test_engine_piper_cancellation(pipeline: Pipeline) -> None:
    with pytest.raises(Cancelled):
        pipeline.synthesize("One. Two. Three.", voice=PIPER_VOICE, should_stop=lambda: True)


def test_engine_piper_user_mounted_voice_loads_like_the_bundled_one(tmp_path: Path) -> None:
    bundled = bundled_voice_dir()
    assert bundled is not None
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(bundled / "en_US-joe-medium.onnx", models / "en_US-mounted-medium.onnx")
    shutil.copy(bundled / "en_US-joe-medium.onnx.json", models / "en_US-mounted-medium.onnx.json")
    (models / "broken.onnx").write_bytes(b"not a model")  # must be skipped, not fatal
    shutil.copy(bundled / "en_US-joe-medium.onnx.json", models / "broken.onnx.json")
    (models / "orphan.onnx").write_bytes(b"no config next to it")

    engine = PiperEngine(models, device="cpu", threads=1)
    engine.load()
    ids = {v.id for v in engine.voices()}
    assert ids == {PIPER_VOICE, "piper:en_US-mounted-medium"}
    speech = engine.synthesize(ENGLISH, "piper:en_US-mounted-medium", prosody_for())
    assert speech.engine == "piper" and 1.0 <= speech.seconds <= 4.0
    assert engine.providers == ["CPUExecutionProvider"]


def test_engine_piper_mounted_zh_cn_voice_in_a_nested_folder_speaks_mandarin(tmp_path: Path) -> None:
    # The piper-voices repository nests voices (zh/zh_CN/<name>/<quality>/) and some copies name the
    # config `<name>.json`. No zh_CN model ships offline, so this one is the CC0 network with a zh_CN
    # config (espeak `cmn` phonemes): what matters is that it is found, labelled and speaks the text.
    bundled = bundled_voice_dir()
    assert bundled is not None
    config = json.loads((bundled / "en_US-joe-medium.onnx.json").read_text(encoding="utf-8"))
    config["espeak"] = {"voice": "cmn"}
    config["language"] = {"code": "zh_CN", "family": "zh", "region": "CN", "name_native": "简体中文",
                          "name_english": "Chinese"}
    nested = tmp_path / "models" / "zh" / "zh_CN" / "test" / "medium"
    nested.mkdir(parents=True)
    shutil.copy(bundled / "en_US-joe-medium.onnx", nested / "zh_CN-test-medium.onnx")
    (nested / "zh_CN-test-medium.json").write_text(json.dumps(config), encoding="utf-8")

    engine = PiperEngine(tmp_path / "models", device="cpu", threads=1)
    engine.load()
    voices = {v.id: v for v in engine.voices()}
    assert set(voices) == {PIPER_VOICE, "piper:zh_CN-test-medium"}
    assert voices["piper:zh_CN-test-medium"].language == "zh-CN"
    speech = engine.synthesize(CHINESE, "piper:zh_CN-test-medium", prosody_for())
    english = engine.synthesize(CHINESE, PIPER_VOICE, prosody_for())  # en-us espeak reads it otherwise
    assert speech.engine == "piper" and speech.seconds > 1.0
    assert float(np.sqrt(np.mean(speech.samples.astype(np.float64) ** 2))) > SILENCE_RMS
    assert speech.seconds != pytest.approx(english.seconds, abs=0.05)


def test_engine_callers_exception_from_should_stop_propagates(pipeline: Pipeline) -> None:
    def broken() -> bool:
        raise TimeoutError("caller gave up")

    with pytest.raises(TimeoutError, match="caller gave up"):
        pipeline.synthesize(ENGLISH, voice="en-us", should_stop=broken)
    assert parse_wav(pipeline.synthesize(ENGLISH, voice="en-us").wav).seconds > 1.0


def test_engine_piper_as_default_engine() -> None:
    from talker.settings import Settings

    piper_first = Pipeline(Settings(tts_engine="piper", default_voice="en-us", device="cpu", enable_piper=True))
    piper_first.load()
    assert piper_first.default_engine == "piper"
    assert piper_first.synthesize("Hello.").engine == "piper"
    assert piper_first.synthesize("Hello.", voice="cmn").engine == "espeak"


def test_engine_espeak_voice_kept_between_calls_is_not_changed_by_what_was_said() -> None:
    # The engine sets espeak's voice and parameters only when a call asks for others. Text that switches
    # language inside (English words in Mandarin) or carries markup must leave the voice as it was.
    engine = EspeakEngine()
    plain = "今天天气很好。"

    def fingerprint() -> tuple[list[str], float]:
        speech = engine.synthesize(plain, "cmn", prosody_for())
        return [p.phoneme for p in speech.phonemes], speech.seconds

    engine.synthesize(ENGLISH, "en-us", prosody_for())
    fresh = fingerprint()  # right after a real voice change
    for text in ("你好，我们的 server 今天 OK 吗？Hello world.", "<voice name='en'>hi</voice> \x01 80S 你好"):
        engine.synthesize(text, "cmn", prosody_for())
        again = fingerprint()  # same voice and parameters: nothing is set before this call
        assert again[0] == fresh[0]
        assert again[1] == pytest.approx(fresh[1], abs=0.02)
    assert engine.synthesize(plain, "cmn", prosody_for("sad")).seconds > fresh[1] * 1.1  # new parameters are set


def test_engine_espeak_audio_without_phonemes_is_the_same_speech(pipeline: Pipeline) -> None:
    engine = EspeakEngine()
    with_marks = engine.synthesize(ENGLISH, "en-us", prosody_for())
    without = engine.synthesize(ENGLISH, "en-us", prosody_for(), phonemes=False)
    assert len(with_marks.phonemes) > 10 and without.phonemes == []
    assert without.seconds == pytest.approx(with_marks.seconds, abs=0.02)
    assert float(np.sqrt(np.mean(without.samples.astype(np.float64) ** 2))) > SILENCE_RMS
    without.samples[:10] = 0  # a caller may edit its samples in place (no read-only view of engine memory)
    # /v1/tts gives no phonemes to anyone; /v1/talk's mouth still gets them (test_engine_mouth.py).
    assert parse_wav(pipeline.synthesize(ENGLISH, voice="en-us").wav).seconds == pytest.approx(with_marks.seconds,
                                                                                                abs=0.02)


def test_engine_quick_speech_is_the_same_speech_or_nothing(pipeline: Pipeline) -> None:
    # /v1/tts tries synthesize_quick() on the limiter's quick thread first: it must say what synthesize() says,
    # or decline (None) without keeping that thread (and the quick jobs behind it) waiting. (espeak-ng varies a
    # sentence's length by a few percent from one call to the next, so lengths are compared within 0.1 s, not
    # sample for sample.)
    from talker.pipeline import QUICK_MAX_AUDIO_S, QUICK_MAX_CHARS
    from talker.tts.espeak import _LOCK

    quick = pipeline.synthesize_quick(ENGLISH, voice="en-us", emotion="sad", speed=0.8, max_seconds=60)
    full = pipeline.synthesize(ENGLISH, voice="en-us", emotion="sad", speed=0.8, max_seconds=60)
    normal = pipeline.synthesize(ENGLISH, voice="en-us", max_seconds=60)
    assert quick is not None and not quick.truncated and (quick.engine, quick.characters) == ("espeak", len(ENGLISH))
    wav = parse_wav(quick.wav)
    assert (wav.rate, wav.channels, wav.width) == (22050, 1, 2) and wav.rms > SILENCE_RMS
    assert wav.seconds == pytest.approx(quick.audio_seconds, abs=1e-3)
    assert quick.audio_seconds == pytest.approx(full.audio_seconds, abs=0.1)
    assert quick.audio_seconds > normal.audio_seconds + 0.3  # the emotion and speed were applied
    assert quick.timings["tts"] > 0

    cut = pipeline.synthesize_quick(LONG_ENGLISH[:100], voice="en-us", max_seconds=1.5)  # the request's own limit
    assert cut is not None and cut.truncated and parse_wav(cut.wav).seconds == pytest.approx(1.5, abs=1e-3)

    digits = "1234567890123, " * 6  # 90 characters, over 40 s of speech
    assert len(digits) <= QUICK_MAX_CHARS and parse_wav(pipeline.synthesize(digits).wav).seconds > QUICK_MAX_AUDIO_S
    assert pipeline.synthesize_quick(digits, voice="en-us", max_seconds=60) is None
    assert pipeline.synthesize_quick(LONG_ENGLISH[:QUICK_MAX_CHARS + 1], voice="en-us", max_seconds=60) is None
    assert pipeline.synthesize_quick(ENGLISH, voice=PIPER_VOICE, max_seconds=60) is None  # Piper: a worker's job

    declined: list[object] = []
    with _LOCK.hold():  # another request is synthesizing: decline at once rather than wait for it
        caller = threading.Thread(target=lambda: declined.append(pipeline.synthesize_quick(ENGLISH, voice="en-us")))
        caller.start()
        caller.join(10)
        assert not caller.is_alive() and declined == [None]


@pytest.mark.parametrize(("voice", "fullwidth", "ascii_form"), [
    ("cmn", "电话１２３４５", "电话12345"),
    ("yue", "電話１２３", "電話123"),
    ("en-us", "Call ５５５ now", "Call 555 now"),
    (PIPER_VOICE, "Call ５５５ now", "Call 555 now"),
    ("cmn", "我们用ＧＰＵ", "我们用GPU"),
])
def test_engine_fullwidth_digits_and_letters_are_spoken_like_their_ascii_forms(
        pipeline: Pipeline, voice: str, fullwidth: str, ascii_form: str) -> None:
    # Every engine (espeak-ng, and Piper through its espeak phonemizer) said nothing for a fullwidth digit:
    # "电话１２３４５" came out as "电话" (0.63 s against 1.9 s), "Call ５５５ now" as "Call now"; a fullwidth word
    # was spelled letter by letter. Whole and streamed speech alike.
    said = pipeline.synthesize(fullwidth, voice=voice).audio_seconds
    expected = pipeline.synthesize(ascii_form, voice=voice).audio_seconds
    assert said == pytest.approx(expected, rel=0.1, abs=0.1)
    streamed = pipeline.stream_speech(fullwidth, voice=voice)
    assert len(list(streamed)) >= 1
    assert streamed.audio_seconds == pytest.approx(expected, rel=0.1, abs=0.15)


@pytest.mark.parametrize("voice", ["en-us", PIPER_VOICE])
def test_engine_a_text_dense_with_numbers_is_spoken_in_full_whole_and_streamed(pipeline: Pipeline,
                                                                               voice: str) -> None:
    # One synthesizer call whose numbers expand past ~300 words lost the rest without a word: 100 times "2024"
    # (500 characters) gave 82 s (espeak-ng) and 76 s (Piper) instead of ~133 s and ~121 s.
    ten = pipeline.synthesize(" ".join(["2024"] * 10), voice=voice).audio_seconds
    text = " ".join(["2024"] * 100)
    whole = pipeline.synthesize(text, voice=voice, max_seconds=600)
    assert whole.audio_seconds == pytest.approx(10 * ten, rel=0.06) and not whole.truncated
    streamed = pipeline.stream_speech(text, voice=voice, max_seconds=600)
    assert len(list(streamed)) > 1
    assert streamed.audio_seconds == pytest.approx(10 * ten, rel=0.06)


@pytest.mark.parametrize("voice", ["en-us", "cmn", PIPER_VOICE])
def test_engine_a_long_run_of_digits_is_spoken_in_full_whole_and_streamed(pipeline: Pipeline, voice: str) -> None:
    # espeak-ng stopped reading a run of digits after about 41 (cmn: 48) and dropped the rest without a word:
    # 100 digits gave 11.2 s of speech. Spelled out they are all said, as the same digits with spaces between.
    run = "1234567890" * 10
    expected = pipeline.synthesize(f"Order {' '.join(run)} is late.", voice=voice, max_seconds=600).audio_seconds
    assert expected > 20  # about 0.28 s a digit
    whole = pipeline.synthesize(f"Order {run} is late.", voice=voice, max_seconds=600)
    assert whole.audio_seconds == pytest.approx(expected, rel=0.06) and not whole.truncated
    streamed = pipeline.stream_speech(f"Order {run} is late.", voice=voice, max_seconds=600)
    assert len(list(streamed)) >= 1
    assert streamed.audio_seconds == pytest.approx(expected, rel=0.06)


def test_engine_espeak_text_of_several_calls_keeps_its_phoneme_times_in_order() -> None:
    # /v1/talk's mouth reads the phoneme marks of the whole text: pieces joined must count from its start.
    engine = EspeakEngine()
    text = " ".join(["2024"] * 30)
    speech = engine.synthesize(text, "en-us", prosody_for())
    starts = [m.start_s for m in speech.phonemes]
    assert starts == sorted(starts) and len(starts) > 100
    assert starts[-1] > speech.seconds - 1.0  # the last number's phonemes sit at the end, not at a piece's start
    first_piece = engine.synthesize(" ".join(["2024"] * 5), "en-us", prosody_for())
    assert speech.seconds > 5 * first_piece.seconds  # 30 numbers, more than one call's worth
