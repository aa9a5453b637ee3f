"""HTTP benchmark of the talker service (not run by `make test`).

    .venv/bin/python bench/bench_talker.py [--duration 5] [--rounds 3] [--voice en-us]

Prints, as JSON lines and a short table:
  1. TTS requests/s through HTTP vs calling Pipeline.synthesize directly, both at concurrency 2
     (ratio; goal >= 0.85), with p50/p95 latency;
  2. /v1/talk speed as a multiple of real time at 256 px (goal >= 5x);
  3. instrumentation cost: the same HTTP load with TALKER_METRICS_ENABLED true vs false
     (goal <= 3 % throughput loss).
All three loads run interleaved, round after round, and the medians are compared, so other work on a
shared machine skews them alike. The load generator runs on the same box and takes CPU from the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_engines import TEXT_EN  # noqa: E402 - after the path set-up above
from load import LoadResult, closed_loop  # noqa: E402
from talker.pipeline import Pipeline  # noqa: E402
from talker.settings import Settings  # noqa: E402

from stack.procs import ManagedProcess, free_port, wait_http  # noqa: E402

CONCURRENCY = 2


@contextmanager
def talker_server(log_dir: Path, name: str, **env: str) -> Iterator[str]:
    port = free_port()
    full_env = {
        **os.environ,
        "TALKER_HOST": "127.0.0.1",
        "TALKER_PORT": str(port),
        "TALKER_MAX_CONCURRENCY": str(CONCURRENCY),
        "TALKER_MAX_QUEUE": "64",
        "TALKER_REQUEST_TIMEOUT_S": "120",
        "TALKER_LOG_LEVEL": "WARNING",  # one log line per request would bench the log handler
        **env,
    }
    with ManagedProcess(name, [sys.executable, "-m", "talker"], log_dir=log_dir, env=full_env, cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", timeout=120, proc=proc)
        yield url


def http_tts(url: str, body: dict[str, object]) -> Callable[[], bool]:
    # The load generator shares this box's CPU with the server, so it uses the lightest client there is:
    # http.client with one keep-alive connection per load thread (httpx costs ~1.4 ms CPU per request).
    host_port = url.removeprefix("http://")
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    local = threading.local()

    def call() -> bool:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host_port, timeout=60)
        try:
            conn.request("POST", "/v1/tts", body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            local.conn = None
            return False
        return response.status == 200 and len(data) > 44

    return call


def direct_tts(pipeline: Pipeline, body: dict[str, object]) -> Callable[[], bool]:
    def call() -> bool:
        out = pipeline.synthesize(str(body["text"]), voice=body.get("voice"))  # type: ignore[arg-type]
        return len(out.wav) > 44

    return call


def talk_speed(url: str, text: str, repeat: int) -> dict[str, float]:
    audio, wall = 0.0, 0.0
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/v1/talk", json={"text": text})  # warm
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.post("/v1/talk", json={"text": text})
            wall += time.perf_counter() - started
            response.raise_for_status()
            audio += float(response.headers["x-audio-seconds"])
    return {
        "audio_s": round(audio / repeat, 2),
        "wall_s": round(wall / repeat, 3),
        "x_realtime": round(audio / wall, 1),
    }


def report(name: str, values: dict[str, object]) -> None:
    print(json.dumps({"bench": name, **values}, ensure_ascii=False), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved direct/on/off rounds (median)")
    parser.add_argument("--voice", default="en-us", help="voice for the TTS load (e.g. piper:en_US-joe-medium)")
    parser.add_argument("--talk-repeat", type=int, default=5)
    args = parser.parse_args()
    body: dict[str, object] = {"text": TEXT_EN, "voice": args.voice}

    pipeline = Pipeline(Settings())
    pipeline.load()
    direct_runs: list[LoadResult] = []
    on_runs: list[LoadResult] = []
    off_runs: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-talker-") as tmp, talker_server(
        Path(tmp), "talker-metrics-on"
    ) as on_url, talker_server(Path(tmp), "talker-metrics-off", TALKER_METRICS_ENABLED="false") as off_url:
        # Rounds interleave the three set-ups so load from anything else on the box hits all of them alike.
        for round_no in range(args.rounds):
            loads = (
                ("tts_direct", direct_tts(pipeline, body), direct_runs),
                ("tts_http_metrics_on", http_tts(on_url, body), on_runs),
                ("tts_http_metrics_off", http_tts(off_url, body), off_runs),
            )
            for name, call, runs in loads:
                result = closed_loop(call, concurrency=CONCURRENCY, duration_s=args.duration)
                runs.append(result)
                report(name, {"round": round_no, "voice": args.voice, **result.summary()})
        talk = talk_speed(on_url, TEXT_EN, args.talk_repeat)
        report("talk_256px", talk)

    direct_rps = statistics.median(r.requests_per_s for r in direct_runs)
    http_rps = statistics.median(r.requests_per_s for r in on_runs)
    off_rps = statistics.median(r.requests_per_s for r in off_runs)
    ratio = http_rps / direct_rps
    cost = 1 - http_rps / off_rps
    summary = {
        "tts_direct_req_per_s": round(direct_rps, 2),
        "tts_http_req_per_s": round(http_rps, 2),
        "http_over_direct": round(ratio, 3),
        "direct_p50_ms": round(statistics.median(r.percentile(50) for r in direct_runs) * 1000, 1),
        "http_p50_ms": round(statistics.median(r.percentile(50) for r in on_runs) * 1000, 1),
        "http_p95_ms": round(statistics.median(r.percentile(95) for r in on_runs) * 1000, 1),
        "talk_x_realtime": talk["x_realtime"],
        "metrics_off_req_per_s": round(off_rps, 2),
        "instrumentation_cost": round(cost, 4),
    }
    report("summary", summary)
    print(
        f"\nTTS ({args.voice}, concurrency {CONCURRENCY}, median of {args.rounds}): direct {direct_rps:.1f} req/s, "
        f"HTTP {http_rps:.1f} req/s -> ratio {ratio:.2f} (goal >= 0.85)\n"
        f"/v1/talk at 256 px: {talk['x_realtime']}x real time (goal >= 5x)\n"
        f"metrics on {http_rps:.1f} vs off {off_rps:.1f} req/s -> cost {cost * 100:.1f}% (goal <= 3%)"
    )


if __name__ == "__main__":
    main()
