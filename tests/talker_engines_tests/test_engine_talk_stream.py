"""Streaming talk at module level: fragmented MP4 that arrives while rendering goes on, and stops cleanly."""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from talker.animator.fmp4 import avc_codec_string, read_box, samples_per_track, video_track_id
from talker.animator.mouth import StreamingOpenness, openness_track
from talker.animator.stream_encode import CODECS, KEYFRAME_SECONDS
from talker.engine_contract import Cancelled
from talker.pipeline import Pipeline
from talker.talk_stream import FIRST_FRAMES, FirstFramePriority, TalkStream
from talker.tts import SpeechStream, SynthesizedSpeech
from talker_engines_tests.media import decode_audio, decode_frames, ffmpeg_children, ffmpeg_info

FPS = 25
# About a minute of espeak speech.
MINUTE_TEXT = " ".join(["The deployment finished without errors and every check is green again."] * 13)
STREAM_THREADS = ("talker-talk-stream", "talker-fmp4-audio", "talker-fmp4-log")


def stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in STREAM_THREADS]


def top_level_boxes(data: bytes) -> list[str]:
    stream, kinds = io.BytesIO(data), []
    while (box := read_box(stream)) is not None:
        kinds.append(box[0].decode())
    return kinds


def wait_until_nothing_left(deadline_s: float) -> float:
    """Seconds until no stream thread and no ffmpeg child is left; fails after the deadline."""
    started = time.monotonic()
    while stream_threads() or ffmpeg_children() or FIRST_FRAMES._starting:
        if time.monotonic() - started > deadline_s:
            pytest.fail(f"left behind after {deadline_s}s: threads {stream_threads()}, ffmpeg {ffmpeg_children()}, "
                        f"streams still counted as starting {FIRST_FRAMES._starting}")
        time.sleep(0.01)
    return time.monotonic() - started


def test_engine_talk_stream_is_fragmented_h264_aac_and_as_long_as_the_speech(pipeline: Pipeline,
                                                                             tmp_path: Path) -> None:
    stream = pipeline.talk_stream("Hello there. The build is green, and the release is out.", avatar="mei",
                                  voice="en-us")
    segments = list(stream)
    init, media = segments[0], segments[1:]

    assert init.init and top_level_boxes(init.data) == ["ftyp", "moov"]
    assert all(not s.init and top_level_boxes(s.data) == ["moof", "mdat"] for s in media) and len(media) >= 4
    moov = next(box for kind, box in _boxes(init.data) if kind == "moov")
    assert CODECS.startswith(avc_codec_string(moov) + ",")  # the MSE codec string matches the stream
    video = video_track_id(moov)
    assert sum(s.video_frames for s in media) == stream.stats.frames
    assert [samples_per_track(next(b for k, b in _boxes(s.data) if k == "moof"))[video] for s in media] == [
        s.video_frames for s in media]
    gop = round(FPS * KEYFRAME_SECONDS)
    assert [s.video_frames for s in media[:-1]] == [gop] * (len(media) - 1)  # one fragment per keyframe
    assert 0 < media[-1].video_frames <= gop

    path = tmp_path / "stream.mp4"
    path.write_bytes(b"".join(s.data for s in segments))
    info = ffmpeg_info(str(path))
    assert "Video: h264 (Constrained Baseline)" in info and "256x256" in info, info
    assert "Audio: aac (LC)" in info and "22050 Hz" in info, info
    frames = decode_frames(str(path), 256)
    assert len(frames) == stream.stats.frames == math.ceil(stream.stats.audio_seconds * FPS)
    audio = decode_audio(str(path))
    expected = round(stream.stats.audio_seconds * 22050)
    assert 0 <= len(audio) - expected <= 3 * 1024  # plus the AAC encoder's priming and last-frame padding
    assert 2.5 < stream.stats.audio_seconds < 6.0
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 500  # real speech, not silence
    assert set(stream.stats.timings) == {"tts", "animate", "encode"} and all(
        v > 0 for v in stream.stats.timings.values())
    wait_until_nothing_left(2.0)


def _boxes(data: bytes) -> Iterator[tuple[str, bytes]]:
    stream = io.BytesIO(data)
    while (box := read_box(stream)) is not None:
        yield box[0].decode(), box[1]


def test_engine_talk_stream_first_fragment_long_before_the_last(pipeline: Pipeline) -> None:
    stream = pipeline.talk_stream(MINUTE_TEXT, voice="en-us")
    rendered_at_first_frame: int | None = None
    segments = 0
    for segment in stream:
        segments += 1
        if segment.video_frames and rendered_at_first_frame is None:
            rendered_at_first_frame = stream.stats.frames  # frames handed to ffmpeg so far
    assert 45 < stream.stats.audio_seconds < 90
    # The first frames leave when only a small part of the minute has been rendered (the pipes between the
    # renderer, ffmpeg and this reader hold a few seconds of video at most), whatever the machine's speed.
    assert rendered_at_first_frame is not None
    assert rendered_at_first_frame < 0.2 * stream.stats.frames, (rendered_at_first_frame, stream.stats.frames)
    assert segments > 90  # ~2 fragments per second of video, handed over one by one


def test_engine_talk_stream_with_piper_and_punctuation_only(pipeline: Pipeline, tmp_path: Path) -> None:
    piper = next(v.id for v in pipeline.voices() if v.engine == "piper")
    stream = pipeline.talk_stream("Good morning. All systems are go.", voice=piper, avatar="kai")
    data = b"".join(s.data for s in stream)
    assert stream.stats.frames == math.ceil(stream.stats.audio_seconds * FPS) > 25
    (tmp_path / "piper.mp4").write_bytes(data)
    assert len(decode_frames(str(tmp_path / "piper.mp4"), 256)) == stream.stats.frames

    silent = pipeline.talk_stream("...", voice="en-us")
    data = b"".join(s.data for s in silent)
    (tmp_path / "silent.mp4").write_bytes(data)
    assert silent.stats.frames == 1 and len(decode_frames(str(tmp_path / "silent.mp4"), 256)) == 1


def test_engine_talk_stream_closed_early_stops_everything_at_once(pipeline: Pipeline) -> None:
    stream = pipeline.talk_stream(MINUTE_TEXT, voice="en-us")
    segments = iter(stream)
    assert next(segments).init
    assert next(segments).video_frames > 0
    assert ffmpeg_children() and stream_threads()
    closed_at = time.monotonic()
    segments.close()  # what the HTTP layer does when the client goes away
    assert time.monotonic() - closed_at < 0.5
    assert wait_until_nothing_left(0.5) < 0.5
    assert stream.stats.frames < 0.5 * 60 * FPS  # stopped long before the end


def test_engine_talk_stream_unread_output_holds_the_producer_back(pipeline: Pipeline) -> None:
    """Backpressure: a consumer that stops reading stops rendering (bounded buffers, not a runaway producer)."""
    stream = pipeline.talk_stream(MINUTE_TEXT, voice="en-us")
    segments = iter(stream)
    next(segments)
    deadline = time.monotonic() + 3.0
    rendered = -1
    while rendered != stream.stats.frames:  # wait until the producer is blocked (no more progress)
        rendered = stream.stats.frames
        time.sleep(0.3)
        assert time.monotonic() < deadline, "the producer never blocked"
    total = math.ceil(60 * FPS * 0.75)
    assert 0 < rendered < total, rendered  # pipes hold a few seconds of video at most, not the minute
    segments.close()
    wait_until_nothing_left(0.5)


def test_engine_talk_stream_should_stop_cancels_with_cleanup(pipeline: Pipeline) -> None:
    stop = threading.Event()
    stream = pipeline.talk_stream(MINUTE_TEXT, voice="en-us", should_stop=stop.is_set)
    segments = iter(stream)
    next(segments)
    stop.set()
    with pytest.raises(Cancelled):
        for _ in segments:
            pass
    wait_until_nothing_left(0.5)


def test_engine_talk_stream_engine_failure_reaches_the_consumer(pipeline: Pipeline) -> None:
    def failing_pieces() -> Iterator[SynthesizedSpeech]:
        yield SynthesizedSpeech(samples=np.zeros(22050, dtype=np.int16), sample_rate=22050, engine="espeak")
        raise RuntimeError("engine broke")

    speech = SpeechStream(engine="espeak", sample_rate=22050, characters=1, pieces=failing_pieces())
    stream = TalkStream(speech, pipeline._renderers["aria"], fps=FPS)
    with pytest.raises(RuntimeError, match="engine broke"):
        list(stream)
    wait_until_nothing_left(0.5)


def test_engine_streaming_openness_matches_the_whole_track_and_comes_out_as_audio_arrives(
        pipeline: Pipeline) -> None:
    pieces = list(pipeline.stream_speech("Hello there. How are you today?", voice="en-us"))
    rate = pieces[0].sample_rate
    samples = np.concatenate([p.samples for p in pieces])
    phonemes = [mark for p in pieces for mark in p.phonemes]
    whole = openness_track(samples, rate, phonemes, fps=FPS)

    at_once = StreamingOpenness(rate, FPS)
    fed = at_once.feed(samples, phonemes)
    assert len(fed) == len(whole) - 2  # the partial last frame and the smoothing's look-ahead wait for finish()
    at_once_track = np.concatenate((fed, at_once.finish()))
    assert np.array_equal(at_once_track == 0, whole == 0)
    assert float(np.max(np.abs(at_once_track - whole))) < 0.01  # the reference lacked only the last frame

    chunked = StreamingOpenness(rate, FPS)
    parts, emitted_after = [], []
    step = rate // 10  # 100 ms chunks
    for start in range(0, len(samples), step):
        t0, t1 = start / rate, (start + step) / rate
        marks = [p for p in phonemes if t0 <= p.start_s < t1]
        parts.append(chunked.feed(samples[start:start + step], marks))
        emitted_after.append(chunked.frames_emitted)
    parts.append(chunked.finish())
    streamed = np.concatenate(parts)
    assert len(streamed) == len(whole)
    assert np.array_equal(streamed == 0, whole == 0)  # silence is closed in both, at the same frames
    assert float(np.max(np.abs(streamed - whole))) < 0.35  # only the running loudness reference differs
    # Frames come out as their audio arrives, two frames behind (the smoothing looks one frame ahead).
    for k, emitted in enumerate(emitted_after[:-1]):
        assert int((k + 1) * step * FPS / rate) - 2 <= emitted <= int((k + 1) * step * FPS / rate)


def test_engine_first_frame_priority_pauses_started_streams_briefly() -> None:
    priority = FirstFramePriority()

    def pause(stopping: threading.Event | None = None) -> float:
        started = time.monotonic()
        priority.let_starters_go_first(stopping.is_set if stopping else lambda: False)
        return time.monotonic() - started

    assert pause() < 0.05  # nobody is starting: no pause at all
    priority.starting()
    assert FirstFramePriority.MAX_PAUSE_S <= pause() < FirstFramePriority.MAX_PAUSE_S + 0.5  # bounded
    threading.Timer(0.05, priority.started).start()
    assert 0.04 <= pause() < 0.25  # ends as soon as the starter has its first frames out
    priority.starting()
    stop = threading.Event()
    threading.Timer(0.05, lambda: (stop.set(), priority.wake())).start()
    assert 0.04 <= pause(stop) < 0.25  # and at once for a stream that is closed meanwhile
