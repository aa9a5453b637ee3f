"""Emotion + speed -> prosody, and prosody -> each engine's own knobs.

One table of relative factors (1.0 = the voice's normal) so both engines express an emotion the same
way; each engine maps and clamps them into its own parameter ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from talker.engine_contract import EMOTIONS

SPEED_MIN, SPEED_MAX = 0.5, 2.0


@dataclass(frozen=True)
class Prosody:
    rate: float  # speaking-rate multiplier (emotion x speed)
    pitch: float  # base-pitch multiplier
    pitch_range: float  # intonation-range multiplier (0 = monotone)
    volume: float  # loudness multiplier


# Sad speech is slow, low and flat; anger is loud with a wide range; surprise is high-pitched.
_EMOTION_PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(rate=1.00, pitch=1.00, pitch_range=1.00, volume=1.00),
    "happy": Prosody(rate=1.10, pitch=1.25, pitch_range=1.50, volume=1.10),
    "sad": Prosody(rate=0.80, pitch=0.75, pitch_range=0.50, volume=0.80),
    "angry": Prosody(rate=1.15, pitch=0.90, pitch_range=1.60, volume=1.40),
    "surprised": Prosody(rate=1.05, pitch=1.40, pitch_range=1.80, volume=1.15),
}
assert set(_EMOTION_PROSODY) == set(EMOTIONS), "the table must cover the shared emotion set"


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def prosody_for(emotion: str = "neutral", speed: float = 1.0) -> Prosody:
    """Prosody for an emotion at a speed; unknown emotions fall back to neutral (the HTTP layer validates)."""
    base = _EMOTION_PROSODY.get(emotion, _EMOTION_PROSODY["neutral"])
    speed = clamp(float(speed), SPEED_MIN, SPEED_MAX)
    return Prosody(rate=base.rate * speed, pitch=base.pitch, pitch_range=base.pitch_range, volume=base.volume)


@dataclass(frozen=True)
class EspeakParams:
    rate_wpm: int  # espeakRATE 80..450
    pitch: int  # espeakPITCH 0..99
    pitch_range: int  # espeakRANGE 0..99
    volume: int  # espeakVOLUME 0..200


ESPEAK_NORMAL_RATE_WPM = 175


def espeak_params(p: Prosody) -> EspeakParams:
    return EspeakParams(
        rate_wpm=round(clamp(ESPEAK_NORMAL_RATE_WPM * p.rate, 80, 450)),
        pitch=round(clamp(50 * p.pitch, 0, 99)),
        pitch_range=round(clamp(50 * p.pitch_range, 0, 99)),
        volume=round(clamp(100 * p.volume, 0, 200)),
    )


@dataclass(frozen=True)
class PiperParams:
    length_scale: float  # >1 slower
    noise_scale: float  # more generator noise = livelier intonation
    volume: float  # sample multiplier after Piper's peak normalisation (kept <= 1 to avoid clipping)


def piper_params(p: Prosody, *, base_length_scale: float = 1.0, base_noise_scale: float = 0.667) -> PiperParams:
    """Piper (VITS) has no pitch input: base pitch is not expressed; pitch range maps to generator noise."""
    return PiperParams(
        length_scale=clamp(base_length_scale / p.rate, 0.25, 4.0),
        noise_scale=clamp(base_noise_scale * (0.6 + 0.4 * p.pitch_range), 0.1, 1.5),
        volume=clamp(0.7 * p.volume, 0.1, 1.0),
    )


# Characters per second of speech at rate 1.0, on the fast side of what the voices do (espeak-ng en-us
# ~18, Mandarin ~3.2 characters/s): the estimate below errs short, so it refuses only texts that are
# surely too long. Digits say far more than their length and are caught while synthesizing instead.
_CJK = re.compile("[\u3400-\u9fff\uf900-\ufaff]")
_CHARS_PER_S = 20.0
_CJK_CHARS_PER_S = 4.0
_SLOWEST_RATE = 80 / ESPEAK_NORMAL_RATE_WPM  # espeak's floor; Piper goes slower only below speed 0.5


def min_audio_seconds(text: str, p: Prosody) -> float:
    """A lower estimate of how long `text` takes to say at prosody `p` (for TALKER_MAX_AUDIO_SECONDS)."""
    cjk = len(_CJK.findall(text))  # a regex and str.split run in C: this is on every request's path
    other = len("".join(text.split())) - cjk  # characters that are not whitespace (str.isspace's definition)
    rate = max(p.rate, _SLOWEST_RATE)
    return (other / _CHARS_PER_S + cjk / _CJK_CHARS_PER_S) / rate
