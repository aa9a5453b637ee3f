"""Talking-head video from the real pipeline: MP4 that players accept, a mouth that follows the voice."""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from talker.animator.avatars import LOOKS, drawn_avatar, load_avatars
from talker.animator.mouth import openness_track, phoneme_openness
from talker.animator.renderer import DeviceUnavailable, MouthRenderer, resolve_device
from talker.engine_contract import Cancelled, UnknownAvatar
from talker.ffmpeg import ffmpeg_exe
from talker.pipeline import Pipeline
from talker.settings import Settings
from talker_engines_tests.media import decode_audio, decode_frames, ffmpeg_children, ffmpeg_info

# Two sentences: the pause between them is silence in the middle of the video.
TWO_SENTENCES = "Hello there. How are you today?"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty temp dir that tempfile uses for the rest of the test."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_engine_talk_mp4_is_h264_aac_25fps_and_as_long_as_the_speech(pipeline: Pipeline, tmp_path: Path,
                                                                      private_tmp: Path) -> None:
    out = pipeline.talk(TWO_SENTENCES, avatar="aria", voice="en-us")
    assert out.engine == "espeak" and out.characters == len(TWO_SENTENCES)
    assert out.frames == math.ceil(out.audio_seconds * 25)
    assert set(out.timings) == {"tts", "animate", "encode"} and all(v > 0 for v in out.timings.values())
    assert list(private_tmp.iterdir()) == []  # no temp files left behind

    path = tmp_path / "talk.mp4"
    path.write_bytes(out.mp4)
    info = ffmpeg_info(str(path))
    assert re.search(r"Video: h264 .*yuv420p.*256x256.* 25 fps", info), info
    assert re.search(r"Audio: aac .*22050 Hz, mono", info), info
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info).groups()  # type: ignore[union-attr]
    assert int(h) * 3600 + int(m) * 60 + float(s) == pytest.approx(out.audio_seconds, abs=0.2)
    # faststart: the index (moov) comes before the media data so browsers can start playing at once.
    assert out.mp4.index(b"moov") < out.mp4.index(b"mdat")

    frames = decode_frames(str(path), 256)
    assert len(frames) == out.frames
    audio = decode_audio(str(path))
    assert len(audio) / 22050 == pytest.approx(out.audio_seconds, abs=0.2)


def test_engine_mouth_moves_with_loud_speech_and_rests_in_silence(pipeline: Pipeline, tmp_path: Path) -> None:
    out = pipeline.talk(TWO_SENTENCES, avatar="kai", voice="en-us")
    path = tmp_path / "talk.mp4"
    path.write_bytes(out.mp4)
    frames = decode_frames(str(path), 256).astype(np.int16)
    audio = decode_audio(str(path)).astype(np.float64)

    per_frame = 22050 // 25
    rms = np.array([np.sqrt(np.mean(audio[i * per_frame:(i + 1) * per_frame] ** 2) + 0.0) for i in range(len(frames))])
    # Silent: this frame and both neighbours quiet (AAC smears edges). Loud: clearly speaking.
    quiet = rms < 50
    silent = [i for i in range(1, len(frames) - 1) if quiet[i - 1] and quiet[i] and quiet[i + 1]]
    loud = [i for i in range(len(frames)) if rms[i] > 2000]
    assert len(silent) >= 3, "the pause between the sentences should give silent frames"
    assert len(loud) >= 10

    still = drawn_avatar("kai", 256).image.astype(np.int16)
    x0, y0, x1, y1 = drawn_avatar("kai", 256).mouth_box

    def mouth_change(i: int) -> float:
        return float(np.abs(frames[i, y0:y1, x0:x1] - still[y0:y1, x0:x1]).mean())

    # In silence the mouth is the portrait's closed mouth (up to x264 noise) and frames are ~identical.
    resting = max(mouth_change(i) for i in silent)
    assert resting < 4.0
    assert max(float(np.abs(frames[i] - frames[silent[0]]).mean()) for i in silent) < 0.5
    assert np.median([mouth_change(i) for i in loud]) > 3 * resting
    # Outside the mouth box nothing moves, speaking or not.
    outside = frames.copy()
    outside[:, y0:y1, x0:x1] = still[y0:y1, x0:x1]
    assert float(np.abs(outside - still).mean(axis=(1, 2, 3)).max()) < 2.0


def test_engine_talk_in_mandarin_and_with_piper(pipeline: Pipeline) -> None:
    zh = pipeline.talk("你好，世界。", avatar="mei", voice="cmn")
    assert zh.frames == math.ceil(zh.audio_seconds * 25) and zh.mp4[4:8] == b"ftyp"
    neural = pipeline.talk("Hello world.", voice="piper:en_US-joe-medium")
    assert neural.engine == "piper" and neural.frames == math.ceil(neural.audio_seconds * 25)


def test_engine_talk_unknown_avatar(pipeline: Pipeline) -> None:
    assert {a.id for a in pipeline.avatars()} >= {"aria", "kai"}
    assert pipeline.has_avatar("aria") and not pipeline.has_avatar("nobody")
    with pytest.raises(UnknownAvatar):
        pipeline.talk("hi", avatar="nobody")


def test_engine_talk_cancelled_while_encoding_leaves_no_files_or_processes(pipeline: Pipeline,
                                                                           private_tmp: Path) -> None:
    text = " ".join(["This sentence keeps the encoder busy for a while."] * 6)
    polls = 0

    def count_polls() -> bool:
        nonlocal polls
        polls += 1
        return False

    pipeline.talk(text, voice="en-us", should_stop=count_polls)
    total, polls = polls, 0

    def stop_mid_video() -> bool:
        nonlocal polls
        polls += 1
        # The last polls of a run come from the render/encode loop (one per 32-frame batch).
        return polls > total - 6

    with pytest.raises(Cancelled):
        pipeline.talk(text, voice="en-us", should_stop=stop_mid_video)
    assert polls == total - 5
    assert list(private_tmp.iterdir()) == []
    assert ffmpeg_children() == []


def test_engine_punctuation_only_text_still_makes_a_valid_video(pipeline: Pipeline, tmp_path: Path) -> None:
    out = pipeline.talk("...", voice="en-us")
    path = tmp_path / "dots.mp4"
    path.write_bytes(out.mp4)
    assert out.frames >= 1 and "h264" in ffmpeg_info(str(path))


def test_engine_mouth_openness_track() -> None:
    assert phoneme_openness("'a") > phoneme_openness("E") > phoneme_openness("m")
    assert phoneme_openness("_:") == 0.0
    rate = 22050
    t = np.arange(rate) / rate
    tone = (8000 * np.sin(2 * np.pi * 180 * t)).astype(np.int16)
    samples = np.concatenate([np.zeros(rate // 2, dtype=np.int16), tone, np.zeros(rate // 2, dtype=np.int16)])
    track = openness_track(samples, rate, [], fps=25)
    assert len(track) == 50
    assert np.all(track[:12] == 0) and np.all(track[-12:] == 0)
    assert track[15:35].min() > 0.5


def test_engine_user_mounted_avatar_is_decoded_and_animated(tmp_path: Path) -> None:
    # A non-square 400x300 "photo": the drawn kai face, scaled and padded, written as PNG by ffmpeg.
    source = tmp_path / "src.rgb"
    source.write_bytes(drawn_avatar("kai", 300).image.tobytes())
    avatars_dir = tmp_path / "avatars"
    avatars_dir.mkdir()
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "300x300",
                    "-i", str(source), "-vf", "pad=400:300:50:0:color=white", str(avatars_dir / "me.png")],
                   check=True)
    x0, y0, x1, y1 = drawn_avatar("kai", 300).mouth_box
    (avatars_dir / "me.json").write_text(f'{{"name": "Me", "mouth_box": [{x0 + 50}, {y0}, {x1 + 50}, {y1}]}}')
    (avatars_dir / "broken.png").write_bytes(b"not an image")

    avatars = load_avatars(avatars_dir, 256)
    assert set(avatars) == set(LOOKS) | {"me"}
    me = avatars["me"]
    assert me.name == "Me" and me.image.shape == (256, 256, 3)
    expected_box = drawn_avatar("kai", 256).mouth_box
    assert all(abs(a - b) <= 2 for a, b in zip(me.mouth_box, expected_box, strict=True))
    # Centre-cropped: the padding is gone and the face is where the drawn one is.
    assert float(np.abs(me.image.astype(int) - drawn_avatar("kai", 256).image.astype(int)).mean()) < 6

    closed, opened = MouthRenderer(me).render(np.array([0.0, 1.0]))
    assert np.array_equal(closed, me.image)
    bx0, by0, bx1, by1 = me.mouth_box
    assert float(np.abs(opened[by0:by1, bx0:bx1].astype(int) - closed[by0:by1, bx0:bx1]).mean()) > 8


def test_engine_mounted_avatar_with_bad_metadata_is_skipped_not_fatal(tmp_path: Path) -> None:
    source = tmp_path / "src.rgb"
    source.write_bytes(drawn_avatar("mei", 300).image.tobytes())
    avatars_dir = tmp_path / "avatars"
    avatars_dir.mkdir()
    bad_metadata = {
        "outside": '{"mouth_box": [500, 500, 600, 600]}',  # coordinates of some other, larger image
        "notalist": '{"mouth_box": 5}',
        "notanobject": "[1, 2, 3, 4]",
    }
    for stem, meta in [*bad_metadata.items(), ("good", '{"name": "Good"}')]:
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "300x300",
                        "-i", str(source), str(avatars_dir / f"{stem}.png")], check=True)
        (avatars_dir / f"{stem}.json").write_text(meta)

    assert set(load_avatars(avatars_dir, 256)) == set(LOOKS) | {"good"}
    pipeline = Pipeline(Settings(device="cpu", enable_piper=False, avatars_dir=avatars_dir))
    pipeline.load()  # one bad mounted file must not keep the whole service from starting
    assert pipeline.talk("Hi.", avatar="good").frames > 0


def test_engine_device_selection_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("this box has CUDA; the no-CUDA behaviour cannot be observed here")
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceUnavailable, match="TALKER_DEVICE"):
        resolve_device("cuda")
    pipeline = Pipeline(Settings(device="cuda", enable_piper=False))
    with pytest.raises(DeviceUnavailable):
        pipeline.load()


@pytest.mark.gpu
def test_engine_cuda_render_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    assert resolve_device("auto") == "cuda"
    avatar = drawn_avatar("aria", 256)
    openness = np.linspace(0.0, 1.0, 64, dtype=np.float32)
    cpu = MouthRenderer(avatar, "cpu").render(openness).astype(int)
    gpu = MouthRenderer(avatar, "cuda").render(openness).astype(int)
    assert np.abs(cpu - gpu).max() <= 2
    pipeline = Pipeline(Settings(device="auto", enable_piper=False))
    pipeline.load()
    assert pipeline.device == "cuda"
    assert pipeline.talk("Hello from the GPU.").frames > 10
