"""Spoken test input for the ASR tests: espeak-ng English (talker's own engine) as WAV, webm/opus and ogg/opus.

The same utterance in every container, encoded by the bundled ffmpeg the way a browser's MediaRecorder (webm/opus)
or a phone app (ogg/opus) would send it."""

from __future__ import annotations

import subprocess
import sys
from functools import lru_cache

from talker.ffmpeg import ffmpeg_exe
from talker.tts.wav import wav_header

UTTERANCE = "hello world what is the weather today"
# pocketsphinx hears espeak's utterance as "oh where oh what is the weather today": assert on the robust words.
KEY_WORDS = ("weather", "today")


# espeak-ng's audio for a text changes a little from one call to the next in a process (41309, 41329, 41316, ...
# samples: internal state carried across calls, not its random seed), and pocketsphinx hears only some of those
# takes right (2 of 12 with both key words). So the utterance is always a fresh process's first take: the same
# audio whatever ran before it in this test session.
_FIRST_TAKE = """
import sys
from talker.tts.espeak import EspeakEngine
from talker.tts.prosody import Prosody
engine = EspeakEngine()
engine.load()
speech = engine.synthesize(sys.argv[1], "en-us", Prosody(rate=1.0, pitch=1.0, pitch_range=1.0, volume=1.0),
                           phonemes=False)
sys.stdout.buffer.write(speech.sample_rate.to_bytes(4, "little") + speech.samples.tobytes())
"""


@lru_cache
def espeak_pcm(text: str = UTTERANCE) -> tuple[bytes, int]:
    """(s16le mono samples, sample rate) of espeak-ng's en-us voice saying `text` (a fresh process's first take)."""
    out = subprocess.run([sys.executable, "-c", _FIRST_TAKE, text], capture_output=True, check=True, timeout=120).stdout
    return out[4:], int.from_bytes(out[:4], "little")


@lru_cache
def speech_file(container: str, text: str = UTTERANCE) -> bytes:
    """The utterance as a file: wav, webm (opus) or ogg (opus)."""
    pcm, rate = espeak_pcm(text)
    wav = wav_header(rate, len(pcm)) + pcm
    if container == "wav":
        return wav
    # Written to a pipe, ffmpeg cannot seek back: the webm has no cues and no duration, as Chromium's MediaRecorder
    # writes it (a live stream).
    muxer = {"webm": "webm", "ogg": "ogg"}[container]
    done = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "wav", "-i", "pipe:0",
         "-c:a", "libopus", "-b:a", "32k", "-f", muxer, "pipe:1"],
        input=wav, capture_output=True, check=True, timeout=60,
    )
    return done.stdout
