"""ASR real-time factor of pocketsphinx on this machine (the conversation's offline ASR stage, talker.asr).

    .venv/bin/python bench/bench_asr.py [--repeat 3] [--webm]

Each utterance is espeak-ng English (talker's own engine), decoded to 16 kHz mono by talker.audio_input (WAV in,
or webm/opus with --webm: the browser's format), then recognised by PocketsphinxRecogniser in its worker thread.
RTF = recognition seconds / seconds of speech (below 1 is faster than real time); decoding is printed apart.
Prints p50/p95 over utterances x repeats, one JSON line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time

from talker.asr import PocketsphinxRecogniser, SpeechToText
from talker.audio_input import InputLimits, decode_input_audio
from talker.ffmpeg import ffmpeg_exe
from talker.tts.espeak import EspeakEngine
from talker.tts.prosody import Prosody
from talker.tts.wav import wav_header

UTTERANCES = (
    "what is the weather today",
    "hello world what is the weather today",
    "please tell me the time and the temperature outside",
    "how long will it take to drive to the airport this evening",
    "can you turn on the lights in the kitchen and play some music",
    "the quick brown fox jumps over the lazy dog near the river bank",
)
LIMITS = InputLimits(max_seconds=60.0, max_bytes=16 * 1024 * 1024)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def speech(engine: EspeakEngine, text: str, webm: bool) -> tuple[bytes, str]:
    spoken = engine.synthesize(text, "en-us", Prosody(1.0, 1.0, 1.0, 1.0), phonemes=False)
    pcm = spoken.samples.tobytes()
    wav = wav_header(spoken.sample_rate, len(pcm)) + pcm
    if not webm:
        return wav, "wav"
    done = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "wav", "-i", "pipe:0", "-c:a",
                           "libopus", "-b:a", "32k", "-f", "webm", "pipe:1"], input=wav, capture_output=True,
                          check=True, timeout=60)
    return done.stdout, "webm"


async def measure(repeat: int, webm: bool) -> dict[str, object]:
    engine = EspeakEngine()
    engine.load()
    recogniser = PocketsphinxRecogniser()
    started = time.perf_counter()
    recogniser.load()
    load_s = time.perf_counter() - started
    stt = SpeechToText(recogniser, LIMITS)
    rtfs: list[float] = []
    decode_rtfs: list[float] = []
    audio_total = 0.0
    for text in UTTERANCES:
        data, fmt = speech(engine, text, webm)
        for _ in range(repeat):
            t0 = time.perf_counter()
            audio = await decode_input_audio(data, fmt, LIMITS)
            decode_rtfs.append((time.perf_counter() - t0) / audio.seconds)
            result = await stt.recognise(audio)
            rtfs.append(result.realtime_factor)
            audio_total += result.audio_seconds
        print(f"{result.audio_seconds:5.2f} s  rtf {result.realtime_factor:.3f}  "
              f"said: {text!r}  heard: {result.text!r}")
    return {
        "engine": "pocketsphinx", "input": fmt, "utterances": len(UTTERANCES), "repeat": repeat,
        "audio_seconds": round(audio_total, 2), "load_s": round(load_s, 3),
        "rtf_p50": round(statistics.median(rtfs), 3), "rtf_p95": round(quantile(rtfs, 0.95), 3),
        "decode_rtf_p50": round(statistics.median(decode_rtfs), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--webm", action="store_true", help="send webm/opus (the browser's format) instead of WAV")
    args = parser.parse_args()
    result = asyncio.run(measure(args.repeat, args.webm))
    print(f"pocketsphinx RTF p50 {result['rtf_p50']} p95 {result['rtf_p95']} over {result['audio_seconds']} s "
          f"of speech (decode RTF p50 {result['decode_rtf_p50']}, model load {result['load_s']} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
