"""The mouth follows the phonemes, not only the loudness: equal sound, different sounds, different mouths."""

from __future__ import annotations

import numpy as np
from talker.animator.mouth import openness_track
from talker.tts import PhonemeMark

RATE = 22050
FPS = 25


def steady_tone(seconds: float, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * np.sin(2 * np.pi * 180 * t)).astype(np.int16)


def test_engine_mouth_closes_for_bilabials_and_opens_for_open_vowels_at_equal_loudness() -> None:
    # One second of constant loudness: "m" for the first half, "a" for the second (espeak mnemonics).
    samples = steady_tone(1.0)
    marks = [PhonemeMark(0.0, "m"), PhonemeMark(0.5, "'a")]
    track = openness_track(samples, RATE, marks, fps=FPS)
    assert len(track) == 25
    lips_closed = track[2:11]  # frames well inside "m" (smoothing touches only the neighbours of a change)
    wide_open = track[14:23]  # frames well inside "a"
    assert lips_closed.max() < 0.15, lips_closed
    assert wide_open.min() > 0.85, wide_open
    # The same audio with the phonemes swapped swaps the mouth: the shape comes from the phonemes.
    swapped = openness_track(samples, RATE, [PhonemeMark(0.0, "'a"), PhonemeMark(0.5, "m")], fps=FPS)
    assert swapped[2:11].min() > 0.85 and swapped[14:23].max() < 0.15


def test_engine_mouth_vowel_height_orders_openness_at_equal_loudness() -> None:
    # Open > mid > close vowel > bilabial, each held for 0.4 s of the same tone.
    samples = steady_tone(1.6)
    marks = [PhonemeMark(0.0, "a"), PhonemeMark(0.4, "E"), PhonemeMark(0.8, "i"), PhonemeMark(1.2, "p")]
    track = openness_track(samples, RATE, marks, fps=FPS)
    means = [float(track[start + 2:start + 8].mean()) for start in (0, 10, 20, 30)]
    assert means[0] > means[1] > means[2] > means[3], means
    assert means[0] - means[3] > 0.7, means


def test_engine_mouth_is_closed_in_silence_whatever_the_phoneme() -> None:
    samples = np.concatenate([np.zeros(RATE // 2, dtype=np.int16), steady_tone(0.5)])
    track = openness_track(samples, RATE, [PhonemeMark(0.0, "a")], fps=FPS)
    assert np.all(track[:12] == 0.0)  # an open vowel mark cannot open a silent mouth
    assert track[15:23].min() > 0.85
