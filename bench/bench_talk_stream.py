"""Benchmark of POST /v1/talk/stream over HTTP (not run by `make test`).

    .venv/bin/python bench/bench_talk_stream.py [--ttff-requests 40] [--window 20] [--max-sessions 40]

Prints, as JSON lines and a short summary:
  1. time to first frame (TTFF) at 256 px, one stream at a time: p50/p95 of the time from sending the
     request to receiving the first bytes of the body (which are the init segment together with the first
     frames: the server holds the init segment back until then). Goal: p95 <= 400 ms.
  2. capacity ("sessions per box"): N viewers for --window seconds, each asking for a ~12 s talking-head
     video, watching it to the end and asking for the next (arrivals spread over one video's length), for
     N = 1, 4, 8, 12, 16, ...: the largest N at which TTFF p95 <= 500 ms and every stream was produced
     faster than real time (wall time from request to last byte < the video's duration). Goal: >= 20.
     Also printed per N: how far a player that starts at the first fragment would have fallen behind
     (max_lag_s > 0 means it would have stalled), and, going on while every stream stays faster than real
     time, the largest N for that alone (realtime_sessions: what limits capacity when TTFF is the binding one).
The server runs with one synthesis slot per session (TALKER_MAX_CONCURRENCY = 64), espeak only, one
torch thread; the client is plain sockets in threads, so it takes little CPU from the server on this box.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from talker.animator.fmp4 import read_box, samples_per_track  # noqa: E402 - after the path set-up above

from stack.procs import ManagedProcess, free_port, wait_http  # noqa: E402

ROUTE = "/v1/talk/stream"
FPS = 25
# About 12 s of speech: several streams per session and window.
TEXT = ("The deployment finished without errors. Every check is green again, latency is back under the "
        "objective, and the error budget is safe for this week.")
TTFF_GOAL_S, CAPACITY_TTFF_S, CAPACITY_GOAL = 0.400, 0.500, 20


@contextmanager
def talker_server(log_dir: Path, size: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "TALKER_HOST": "127.0.0.1",
        "TALKER_PORT": str(port),
        "TALKER_MAX_CONCURRENCY": "64",
        "TALKER_MAX_QUEUE": "64",
        "TALKER_REQUEST_TIMEOUT_S": "120",
        "TALKER_STREAM_WRITE_TIMEOUT_S": "30",
        "TALKER_VIDEO_SIZE": str(size),
        "TALKER_ENABLE_PIPER": "false",
        "TALKER_ENGINE_THREADS": "1",
        "TALKER_LOG_LEVEL": "WARNING",
    }
    with ManagedProcess("talker-stream-bench", [sys.executable, "-m", "talker"], log_dir=log_dir, env=env,
                        cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", timeout=120, proc=proc)
        yield url, proc.pid


def cpu_seconds(pid: int) -> float:
    """CPU time of the server and its finished children (the ffmpeg processes) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


@dataclass
class StreamResult:
    ok: bool
    ttff_s: float = 0.0
    wall_s: float = 0.0
    media_s: float = 0.0
    max_lag_s: float = 0.0  # how far behind a player that started at the first fragment would have fallen

    @property
    def realtime_factor(self) -> float:
        return self.wall_s / self.media_s if self.media_s else float("inf")


def stream_once(host_port: str, body: bytes) -> StreamResult:
    conn = http.client.HTTPConnection(host_port, timeout=120)
    started = time.perf_counter()
    try:
        conn.request("POST", ROUTE, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            response.read()
            return StreamResult(ok=False)
        data = bytearray()
        arrivals: list[tuple[int, float]] = []  # (bytes received so far, seconds since start)
        first = 0.0
        while chunk := response.read1(65536):
            now = time.perf_counter() - started
            if not data:
                first = now
            data += chunk
            arrivals.append((len(data), now))
        wall = time.perf_counter() - started
    except (OSError, http.client.HTTPException):
        return StreamResult(ok=False)
    finally:
        conn.close()
    # When did each media segment arrive, and where does it start in the video?
    stream, offset, media_t, lag, k = io.BytesIO(bytes(data)), 0, 0.0, 0.0, 0
    while (box := read_box(stream)) is not None:
        kind, raw = box
        offset += len(raw)
        if kind == b"moof":
            while arrivals[k][0] < offset:
                k += 1
            lag = max(lag, arrivals[k][1] - first - media_t)
            media_t += samples_per_track(raw).get(1, 0) / FPS
    return StreamResult(ok=True, ttff_s=first, wall_s=wall, media_s=media_t, max_lag_s=lag)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def report(name: str, values: dict[str, object]) -> None:
    print(json.dumps({"bench": name, **values}), flush=True)


def ttff_sequential(host_port: str, body: bytes, n: int) -> dict[str, float]:
    warm = stream_once(host_port, body)
    results = [stream_once(host_port, body) for _ in range(n)]
    ttffs = [r.ttff_s for r in results if r.ok]
    return {"video_s": round(warm.media_s, 2), "requests": n, "failed": n - len(ttffs),
            "ttff_p50_ms": round(statistics.median(ttffs) * 1000, 1),
            "ttff_p95_ms": round(percentile(ttffs, 95) * 1000, 1),
            "x_realtime_p50": round(statistics.median(1 / r.realtime_factor for r in results if r.ok), 1)}


def sessions(host_port: str, body: bytes, n: int, window_s: float, video_s: float, pid: int) -> dict[str, object]:
    """n viewers for window_s: each asks for a video, watches it to the end, asks for the next one.

    Viewers arrive spread over one video's length (independent users, not a synchronised burst), so about
    n streams play at any moment while fewer are being produced (production is faster than playback)."""
    results: list[StreamResult] = []
    lock = threading.Lock()
    ends = time.perf_counter() + window_s

    def viewer(delay: float) -> None:
        time.sleep(delay)
        while time.perf_counter() < ends:
            asked = time.perf_counter()
            result = stream_once(host_port, body)
            with lock:
                results.append(result)
            # The next request when this video has played out (playback starts with the first fragment).
            time.sleep(max(0.0, asked + result.ttff_s + result.media_s - time.perf_counter()))

    threads = [threading.Thread(target=viewer, args=(random.uniform(0, video_s),)) for _ in range(n)]
    cpu_before = cpu_seconds(pid)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu_used = cpu_seconds(pid) - cpu_before
    good = [r for r in results if r.ok]
    ttffs = [r.ttff_s for r in good]
    rtfs = [r.realtime_factor for r in good]
    realtime = bool(good) and len(good) == len(results) and max(rtfs) < 1.0
    return {
        "sessions": n,
        "streams": len(results),
        "failed": len(results) - len(good),
        "ttff_p50_ms": round(statistics.median(ttffs) * 1000, 1) if good else None,
        "ttff_p95_ms": round(percentile(ttffs, 95) * 1000, 1) if good else None,
        "worst_realtime_factor": round(max(rtfs), 3) if good else None,
        "max_lag_s": round(max(r.max_lag_s for r in good), 3) if good else None,
        # CPU seconds the server (ffmpeg included) spent per second of video: what a core buys, whatever the load.
        "cpu_s_per_video_s": round(cpu_used / sum(r.media_s for r in good), 4) if good else None,
        "realtime": realtime,
        "ok": realtime and percentile(ttffs, 95) <= CAPACITY_TTFF_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttff-requests", type=int, default=40)
    parser.add_argument("--window", type=float, default=40.0, help="seconds per capacity level (several videos)")
    parser.add_argument("--max-sessions", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--levels", default="1,4,8,12,16,20,24,28,32,40,48,56,64",
                        help="session counts to try, in order (comma-separated)")
    args = parser.parse_args()
    body = json.dumps({"text": TEXT}).encode()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-talk-stream-") as tmp, \
            talker_server(Path(tmp), args.size) as (url, pid):
        host_port = url.removeprefix("http://")
        ttff = ttff_sequential(host_port, body, args.ttff_requests)
        report("ttff_sequential", {"size": args.size, **ttff})
        levels = [n for n in (int(v) for v in args.levels.split(",")) if n <= args.max_sessions]
        capacity = realtime_sessions = 0
        cpu_per_video_s: list[object] = []
        for n in levels:  # on while every stream is still faster than real time, to show both limits
            level = sessions(host_port, body, n, args.window, ttff["video_s"], pid)
            cpu_per_video_s.append(level["cpu_s_per_video_s"])
            report("capacity_level", {"size": args.size, **level})
            if not level["realtime"]:
                break
            realtime_sessions = n
            if level["ok"]:
                capacity = n
    report("summary", {"size": args.size, "ttff_p50_ms": ttff["ttff_p50_ms"], "ttff_p95_ms": ttff["ttff_p95_ms"],
                       "capacity_sessions": capacity, "realtime_sessions": realtime_sessions,
                       "cpu_s_per_video_s": cpu_per_video_s,
                       "load_average_before": [round(x, 2) for x in load_before], "cpus": os.cpu_count()})
    print(
        f"\n/v1/talk/stream at {args.size} px, one at a time: TTFF p50 {ttff['ttff_p50_ms']} ms, "
        f"p95 {ttff['ttff_p95_ms']} ms (goal p95 <= {TTFF_GOAL_S * 1000:.0f} ms)\n"
        f"capacity: {capacity} concurrent sessions with TTFF p95 <= {CAPACITY_TTFF_S * 1000:.0f} ms and every "
        f"stream faster than real time (goal >= {CAPACITY_GOAL}); every stream faster than real time, whatever "
        f"the TTFF: {realtime_sessions} sessions (of at most {args.max_sessions} tried)\n"
        f"{os.cpu_count()} CPUs, load average before {load_before[0]:.1f} (other work on the box counts against all)"
    )


if __name__ == "__main__":
    main()
