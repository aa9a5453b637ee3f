"""First-audio latency of a chat turn on /v1/chat/ws against its floor, with the LLM stand-in at a fixed pace.

    flock /tmp/heavy.lock .venv/bin/python bench/bench_chat.py [--first-token-delay 0.3] [--tokens-per-second 20]
        [--turns 8] [--concurrency 1 4]

Starts the LLM stand-in (in this process, its own thread) and a real talker (`python -m talker`, defaults but for
free ports and one slot per conversation: a turn holds a slot while it answers), then runs `turns` text turns on
each of `concurrency` conversations at once. First audio = user text sent -> first binary media frame received
(what talker_chat_first_audio_seconds measures on the server, plus the loopback). Floor = the stand-in's first-
token delay + the time its first sentence takes to arrive at that token rate + the TTFA of that sentence alone
(POST /v1/audio/speech, pcm, median of 5 on the same talker).
Goal (issue 11): p95 <= floor + 50 ms with 4 concurrent conversations. Prints one JSON line per concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from llm_standin.server import LLMStandin, tokenize
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stack.procs import ManagedProcess, free_port, wait_http  # noqa: E402

FIRST_SENTENCE = "Hello there, nice to meet you."
REPLY = FIRST_SENTENCE + " I can tell you about the weather, read the news, or just talk for a while. Ask away!"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def conversation(url: str, turns: int) -> list[float]:
    latencies: list[float] = []
    async with connect(url, max_size=None) as ws:
        for _ in range(turns):
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "user_text", "text": "Hi, who are you?"}))
            first: float | None = None
            while True:
                message = await ws.recv()
                if isinstance(message, bytes):
                    first = first or time.perf_counter()
                    continue
                event = json.loads(message)
                if event["type"] == "turn_end":
                    if event["outcome"] != "completed":
                        raise RuntimeError(f"turn ended {event}")
                    break
            assert first is not None, "no audio in the turn"
            latencies.append(first - sent)
    return latencies


def sentence_ttfa(base: str) -> float:
    samples = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(6):
            started = time.perf_counter()
            with client.stream("POST", "/v1/audio/speech", json={
                    "model": "espeak", "voice": "en-us", "input": FIRST_SENTENCE, "response_format": "pcm"}) as r:
                r.raise_for_status()
                next(r.iter_bytes())
                samples.append(time.perf_counter() - started)
    return statistics.median(samples[1:])  # the first warms the connection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--first-token-delay", type=float, default=0.3)
    parser.add_argument("--tokens-per-second", type=float, default=20.0)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    standin = LLMStandin(replies=[REPLY], first_token_delay=args.first_token_delay,
                         tokens_per_second=args.tokens_per_second)
    standin.start()
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "TALKER_HOST": "127.0.0.1", "TALKER_PORT": str(port), "TALKER_METRICS_PORT": str(metrics_port),
           "TALKER_LLM_BASE_URL": standin.openai_base_url, "TALKER_LOG_LEVEL": "WARNING",
           # A turn holds one slot from its start to its end: as many slots as conversations, or the last ones
           # would wait in the queue for whole answers (services/talker/README.md, "Slots").
           "TALKER_MAX_CONCURRENCY": str(max(args.concurrency))}
    for name in ("TALKER_API_KEYS", "TALKER_API_KEYS_FILE"):
        env.pop(name, None)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    try:
        with ManagedProcess("talker", [sys.executable, "-m", "talker"], log_dir=log_dir, env=env, cwd=ROOT) as proc:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/readyz", timeout=120, proc=proc)
            ttfa = sentence_ttfa(base)
            first_tokens = len(tokenize(FIRST_SENTENCE))
            floor = args.first_token_delay + (first_tokens - 1) / args.tokens_per_second + ttfa
            url = f"ws://127.0.0.1:{port}/v1/chat/ws"
            asyncio.run(conversation(url, 1))  # warm-up: the LLM client's connection, the first session
            for concurrency in args.concurrency:
                async def run(n: int = concurrency) -> list[list[float]]:
                    return await asyncio.gather(*(conversation(url, args.turns) for _ in range(n)))
                latencies = [x for one in asyncio.run(run()) for x in one]
                p50, p95 = quantile(latencies, 0.5), quantile(latencies, 0.95)
                print(f"concurrency {concurrency}: first audio p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; "
                      f"floor {floor * 1000:.0f} ms (first token {args.first_token_delay * 1000:.0f} ms + "
                      f"{first_tokens - 1} tokens at {args.tokens_per_second:g}/s + sentence TTFA "
                      f"{ttfa * 1000:.0f} ms); p95 - floor {(p95 - floor) * 1000:+.0f} ms (goal <= +50 ms)")
                print(json.dumps({"concurrency": concurrency, "turns": len(latencies), "p50_s": round(p50, 4),
                                  "p95_s": round(p95, 4), "floor_s": round(floor, 4),
                                  "first_token_delay_s": args.first_token_delay,
                                  "tokens_per_second": args.tokens_per_second, "sentence_ttfa_s": round(ttfa, 4)}))
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
