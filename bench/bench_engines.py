"""Direct-engine throughput (no HTTP): how many times real time each stage runs on this machine.

    .venv/bin/python bench/bench_engines.py [--repeat 3] [--size 256]

`measure_engines()` is importable so the HTTP benchmark can print engine numbers next to its own.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
from talker.animator.avatars import drawn_avatar
from talker.animator.renderer import MouthRenderer
from talker.pipeline import Pipeline
from talker.settings import Settings

TEXT_EN = ("Good evening. This is the on-call digest: all services are healthy, the error rate is low, "
           "and the queue is empty.")
TEXT_ZH = "晚上好。这是值班摘要：所有服务运行正常，错误率很低，队列为空。"


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_engines(size: int = 256, repeat: int = 3, piper: bool = True) -> dict[str, float]:
    pipeline = Pipeline(Settings(video_size=size, enable_piper=piper))
    results: dict[str, float] = {f"load_{k}_s": round(v, 3) for k, v in pipeline.load().items()}
    cases = [("espeak_en", TEXT_EN, "en-us"), ("espeak_zh", TEXT_ZH, "cmn")]
    if piper and pipeline.has_voice("piper:en_US-joe-medium"):
        cases.append(("piper_en", TEXT_EN, "piper:en_US-joe-medium"))
    for name, text, voice in cases:
        audio_s = pipeline.synthesize(text, voice=voice).audio_seconds
        results[f"tts_{name}_x_realtime"] = round(audio_s / _best(lambda t=text, v=voice: pipeline.synthesize(
            t, voice=v), repeat), 1)
    renderer = MouthRenderer(drawn_avatar("aria", size), pipeline.device)
    openness = np.abs(np.sin(np.linspace(0, 40, 256))).astype(np.float32)
    results["render_fps"] = round(len(openness) / _best(lambda: renderer.render(openness), repeat))
    for name, _text, voice in cases:
        text = TEXT_ZH if name.endswith("zh") else TEXT_EN
        out = pipeline.talk(text, voice=voice)
        results[f"talk_{name}_x_realtime"] = round(out.audio_seconds / _best(
            lambda t=text, v=voice: pipeline.talk(t, voice=v), repeat), 1)
        results[f"talk_{name}_audio_s"] = round(out.audio_seconds, 2)
    results["device"] = pipeline.device  # type: ignore[assignment]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--no-piper", action="store_true")
    args = parser.parse_args()
    print(json.dumps(measure_engines(args.size, args.repeat, not args.no_piper), indent=2))


if __name__ == "__main__":
    main()
