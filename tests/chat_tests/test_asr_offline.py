"""Offline ASR: espeak-ng English -> pocketsphinx, from every accepted container, and the input bounds.

Real ffmpeg, real pocketsphinx (its wheel's en-US model), real espeak-ng speech: nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import threading

import pytest
from chat_tests.asr_speech import KEY_WORDS, espeak_pcm, speech_file
from prometheus_client import CollectorRegistry
from talker.asr import ENGINE_POCKETSPHINX, PocketsphinxRecogniser, SpeechToText
from talker.audio_input import (
    SAMPLE_RATE,
    AudioInputError,
    DecodedAudio,
    InputLimits,
    decode_input_audio,
    parse_input_format,
)
from talker.metrics import TalkerMetrics
from talker.settings import Settings

LIMITS = InputLimits(max_seconds=10.0, max_bytes=1024 * 1024)


@pytest.fixture(scope="module")
def recogniser() -> PocketsphinxRecogniser:
    rec = PocketsphinxRecogniser()
    rec.load()
    return rec


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def utterance_seconds() -> float:
    pcm, rate = espeak_pcm()
    return len(pcm) / 2 / rate


@pytest.mark.parametrize("container", ["wav", "webm", "ogg"])
def test_each_container_decodes_to_16k_and_is_recognised(recogniser: PocketsphinxRecogniser, container: str) -> None:
    metrics = TalkerMetrics(tts_engine="espeak")
    stt = SpeechToText(recogniser, LIMITS, metrics)
    fmt = {"wav": "audio/wav", "webm": "audio/webm;codecs=opus", "ogg": "ogg"}[container]
    result = run(stt.transcribe(speech_file(container), fmt))
    words = result.text.split()
    assert all(word in words for word in KEY_WORDS), result.text
    assert result.engine == ENGINE_POCKETSPHINX
    # The decoded length is the spoken length (opus adds at most its pre-skip/padding: tens of ms).
    assert abs(result.audio_seconds - utterance_seconds()) < 0.1
    assert 0 < result.asr_seconds < 30
    assert result.realtime_factor == pytest.approx(result.asr_seconds / result.audio_seconds)
    registry: CollectorRegistry = metrics.registry
    assert registry.get_sample_value("talker_stage_duration_seconds_count", {"stage": "asr"}) == 1
    assert registry.get_sample_value("talker_stage_duration_seconds_sum", {"stage": "asr"}) == pytest.approx(
        result.asr_seconds)
    assert registry.get_sample_value("talker_realtime_factor_count", {"stage": "asr"}) == 1


def test_raw_pcm_at_its_own_rate(recogniser: PocketsphinxRecogniser) -> None:
    pcm, rate = espeak_pcm()
    assert rate != SAMPLE_RATE  # espeak speaks at 22050 Hz: the resampling is exercised
    audio = run(decode_input_audio(pcm, f"audio/pcm;rate={rate}", LIMITS))
    assert abs(audio.seconds - len(pcm) / 2 / rate) < 0.01
    text = run(recogniser.recognise(audio))
    assert "weather" in text.split()


def test_recognition_runs_off_the_event_loop(recogniser: PocketsphinxRecogniser) -> None:
    pcm, rate = espeak_pcm()
    audio = run(decode_input_audio(pcm, "pcm", LIMITS, pcm_rate=rate))
    threads: list[str] = []

    async def main() -> None:
        loop_thread = threading.current_thread().name
        task = asyncio.create_task(recogniser.recognise(audio))
        ticks = 0
        while not task.done():  # the loop keeps turning while pocketsphinx works
            ticks += 1
            await asyncio.sleep(0)
        threads.append(loop_thread)
        assert "weather" in (await task).split()
        assert ticks > 1

    original = recogniser.recognise_sync
    seen: list[str] = []

    def spy(a: DecodedAudio) -> str:
        seen.append(threading.current_thread().name)
        return original(a)

    recogniser.recognise_sync = spy  # type: ignore[method-assign]
    try:
        run(main())
    finally:
        del recogniser.recognise_sync
    assert seen and seen[0] != threads[0]


# -- bounds: each refusal names its bound; just inside the bound passes ------------------------------------------
@pytest.mark.parametrize("container", ["wav", "webm"])
def test_too_long_names_the_seconds_bound(container: str) -> None:
    seconds = utterance_seconds()
    data = speech_file(container)
    with pytest.raises(AudioInputError) as err:
        run(decode_input_audio(data, container, InputLimits(max_seconds=seconds - 0.3, max_bytes=10**6)))
    assert err.value.kind == "too_long" and "TALKER_MAX_INPUT_AUDIO_SECONDS" in err.value.detail
    assert err.value.client_error
    ok = run(decode_input_audio(data, container, InputLimits(max_seconds=seconds + 0.3, max_bytes=10**6)))
    assert ok.seconds > seconds - 0.1


def test_too_long_raw_pcm_is_refused_before_decoding() -> None:
    pcm, rate = espeak_pcm()
    seconds = len(pcm) / 2 / rate
    with pytest.raises(AudioInputError) as err:
        run(decode_input_audio(pcm, f"pcm;rate={rate}", InputLimits(max_seconds=seconds - 0.05, max_bytes=10**6)))
    assert err.value.kind == "too_long"
    run(decode_input_audio(pcm, f"pcm;rate={rate}", InputLimits(max_seconds=seconds + 0.05, max_bytes=10**6)))


def test_too_many_bytes_names_the_byte_bound() -> None:
    data = speech_file("wav")
    with pytest.raises(AudioInputError) as err:
        run(decode_input_audio(data, "wav", InputLimits(max_seconds=60, max_bytes=len(data) - 1)))
    assert err.value.kind == "too_many_bytes"
    assert "TALKER_MAX_INPUT_AUDIO_BYTES" in err.value.detail and str(len(data) - 1) in err.value.detail
    run(decode_input_audio(data, "wav", InputLimits(max_seconds=60, max_bytes=len(data))))


@pytest.mark.parametrize(("data", "fmt"), [
    (b"this is not a wav file at all" * 20, "wav"),
    (b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 4, "webm"),
    (b"OggS" + b"\x00" * 500, "ogg"),
    (b"", "wav"),
])
def test_not_audio(data: bytes, fmt: str) -> None:
    with pytest.raises(AudioInputError) as err:
        run(decode_input_audio(data, fmt, LIMITS))
    assert err.value.kind == "not_audio" and err.value.field == "audio"


@pytest.mark.parametrize("fmt", ["audio/mpeg", "mp4", "", "pcm", "audio/pcm;rate=abc", "audio/pcm;rate=1000"])
def test_bad_format_names_the_format_field(fmt: str) -> None:
    with pytest.raises(AudioInputError) as err:
        parse_input_format(fmt)
    assert err.value.kind == "bad_format" and err.value.field == "format"


@pytest.mark.parametrize(("text", "kind", "rate"), [
    ("audio/webm;codecs=opus", "webm", None), ("WEBM", "webm", None), ("audio/ogg; codecs=opus", "ogg", None),
    ("audio/x-wav", "wav", None), ("audio/L16;rate=8000", "pcm", 8000), ("pcm_s16le;rate=48000", "pcm", 48000),
])
def test_formats_by_name_and_mime_type(text: str, kind: str, rate: int | None) -> None:
    fmt = parse_input_format(text)
    assert (fmt.kind, fmt.pcm_rate) == (kind, rate)


def test_limits_and_engine_from_settings() -> None:
    settings = Settings(max_input_audio_seconds=12.5, max_input_audio_bytes=4096)
    stt = SpeechToText.from_settings(settings)
    assert stt.engine == ENGINE_POCKETSPHINX
    assert stt.limits == InputLimits(max_seconds=12.5, max_bytes=4096)
    defaults = Settings()
    assert (defaults.max_input_audio_seconds, defaults.max_input_audio_bytes) == (30.0, 2 * 1024 * 1024)
    assert defaults.asr_base_url is None
