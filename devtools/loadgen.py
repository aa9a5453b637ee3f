"""`make load`: demo traffic for the dashboards — a mix of /v1/tts, /v1/talk, streamed /v1/audio/speech and some
bad requests.

    python -m devtools.loadgen --rate 2 --duration 60 [--url http://127.0.0.1:8000]   (make load RATE=2 DURATION=60)

Sends at a fixed rate (open loop: a slow server builds a queue and 429s, like real clients would cause)
and prints a progress line every second: sent / ok / 4xx / 5xx / 429, p50 / p95 latency and the p50 time to
the first audio bytes of the streamed requests (what users of streaming hear as delay). Bounded in
count (rate × duration) and in time (duration + the request timeout), then it stops by itself.

When talker requires API keys, the requests carry `Authorization: Bearer <key>`: the first key of
TALKER_API_KEY, TALKER_API_KEYS, TALKER_API_KEYS_FILE or the compose stack's secrets/talker_api_keys
(stack/api_key.py); the key is never printed, only where it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stack.api_key import ClientKey, client_key, default_key_file
from stack.defaults import LISTENERS
from stack.http_client import RequestFailed, request

SENTENCES = [
    "Hello, this is the talker demo.",
    "The quick brown fox jumps over the lazy dog.",
    "Monitoring makes the invisible visible.",
    "你好，欢迎使用数字人语音服务。",
    "今天的告警演练马上开始。",
]
# Requests the API must refuse with a 4xx naming the field (they make the error panels non-empty).
BAD_BODIES: list[bytes] = [
    b'{"text": ""}',
    b'{"text": "hi", "emotion": "furious"}',
    b'{"txt": "typo in the field name"}',
    b"not json at all",
    json.dumps({"text": "x" * 5000}).encode(),
]


REPO = Path(__file__).resolve().parents[1]
STREAM_PATH = "/v1/audio/speech"  # OpenAI-compatible speech, streamed while it is synthesized


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.first_audio: list[float] = []

    def record_first_audio(self, seconds: float) -> None:
        with self.lock:
            self.counts["streamed"] += 1
            self.first_audio.append(seconds)

    def record(self, status: int, seconds: float) -> None:
        key = ("429" if status == 429 else "ok" if 200 <= status < 300 else "4xx" if 400 <= status < 500
               else "5xx" if status >= 500 else "error")
        with self.lock:
            self.counts["sent"] += 1
            self.counts[key] += 1
            self.latencies.append(seconds)

    def line(self) -> str:
        with self.lock:
            c, lat, ttfa = dict(self.counts), sorted(self.latencies), list(self.first_audio)
        p50 = statistics.median(lat) if lat else 0.0
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else 0.0
        return (f"sent {c.get('sent', 0):5d}  ok {c.get('ok', 0):5d}  4xx {c.get('4xx', 0):4d}  "
                f"5xx {c.get('5xx', 0):4d}  429 {c.get('429', 0):4d}  err {c.get('error', 0):3d}  "
                f"p50 {p50 * 1000:7.0f} ms  p95 {p95 * 1000:7.0f} ms  "
                f"ttfa p50 {statistics.median(ttfa) * 1000 if ttfa else 0.0:6.0f} ms")


def pick_request(rng: random.Random, talk_share: float, bad_share: float,
                 stream_share: float = 0.0) -> tuple[str, bytes]:
    roll = rng.random()
    if roll < bad_share:
        return rng.choice(["/v1/tts", "/v1/talk"]), rng.choice(BAD_BODIES)
    if roll < bad_share + stream_share:
        # OpenAI's voice names map to talker's default voice; WAV keeps the encoder out of the measurement.
        body = {"model": "tts-1", "input": rng.choice(SENTENCES), "voice": "alloy", "response_format": "wav"}
        return STREAM_PATH, json.dumps(body, ensure_ascii=False).encode()
    path = "/v1/talk" if roll < bad_share + stream_share + talk_share else "/v1/tts"
    return path, json.dumps({"text": rng.choice(SENTENCES)}, ensure_ascii=False).encode()


def send(base: str, path: str, body: bytes, timeout: float,
         on_first_bytes: Callable[[], None] | None = None, headers: dict[str, str] | None = None) -> int:
    try:  # on_first_bytes: the first audio bytes of a stream arrived
        return request("POST", f"{base}{path}", data=body, headers=headers, timeout=timeout,
                       on_first_bytes=on_first_bytes).status
    except RequestFailed:
        return 0


def run(base: str, rate: float, duration: float, *, talk_share: float = 0.25, bad_share: float = 0.1,
        stream_share: float = 0.0, timeout: float = 30.0, seed: int | None = None, progress: bool = True,
        api_key: ClientKey | None = None) -> Stats:
    rng = random.Random(seed)  # noqa: S311 - traffic mix, not security
    stats = Stats()
    total = max(1, int(rate * duration))
    stop_progress = threading.Event()
    headers = api_key.headers() if api_key is not None else {}

    def report() -> None:
        while not stop_progress.wait(1.0):
            print("\r" + stats.line(), end="", flush=True)

    def one(path: str, body: bytes) -> None:
        started = time.perf_counter()

        def first_bytes() -> None:
            stats.record_first_audio(time.perf_counter() - started)

        status = send(base, path, body, timeout, first_bytes if path == STREAM_PATH else None, headers)
        stats.record(status, time.perf_counter() - started)

    reporter = threading.Thread(target=report, daemon=True)
    if progress:
        reporter.start()
    started = time.monotonic()
    # Enough workers for rate × timeout in flight would be unbounded; 32 caps what a demo box must hold.
    with ThreadPoolExecutor(max_workers=32) as pool:
        for i in range(total):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, *pick_request(rng, talk_share, bad_share, stream_share))
    stop_progress.set()
    if progress:
        print("\r" + stats.line(), flush=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("TALKER_URL", LISTENERS["talker"].local_url()))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("RATE", "2")), help="requests/second")
    parser.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", "60")), help="seconds")
    parser.add_argument("--talk-share", type=float, default=0.25, help="fraction of /v1/talk (video) requests")
    parser.add_argument("--bad-share", type=float, default=0.1, help="fraction of invalid requests")
    parser.add_argument("--stream-share", type=float, default=0.25,
                        help=f"fraction of streamed {STREAM_PATH} requests (OpenAI-compatible speech)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.rate * args.duration > 100_000:
        parser.error("rate and duration must be positive, at most 100000 requests in total")
    print(f"load: {args.rate:g} req/s for {args.duration:g} s against {args.url} "
          f"({args.talk_share:.0%} talk, {args.stream_share:.0%} streamed speech, {args.bad_share:.0%} invalid)",
          flush=True)
    if args.talk_share + args.stream_share + args.bad_share > 1:
        parser.error("talk, stream and bad shares add up to more than 1")
    try:
        api_key = client_key(default_file=default_key_file(REPO))
    except ValueError as exc:
        parser.error(str(exc))
    if api_key.value:
        print(f"sending talker's API key from {api_key.source}", flush=True)
    stats = run(args.url.rstrip("/"), args.rate, args.duration, talk_share=args.talk_share,
                bad_share=args.bad_share, stream_share=args.stream_share, timeout=args.timeout, api_key=api_key)
    return 0 if stats.counts.get("sent") else 1


if __name__ == "__main__":
    sys.exit(main())
