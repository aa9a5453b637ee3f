"""Time to first audio (TTFA) of POST /v1/audio/speech over HTTP (not run by `make test`).

    .venv/bin/python bench/bench_ttfa.py [--requests 60] [--concurrency 1,4,8] [--engines espeak,piper]

For each engine and concurrency c, c clients send requests back to back (response_format pcm, so no
encoder start-up is measured) and each request's TTFA is the time from sending it to receiving the first
bytes of its body (the status line and headers leave together with the first audio). Prints p50/p95 per
engine and concurrency as JSON lines, then the goals of issue 10:
  - espeak: TTFA p95 <= 30 ms at concurrency 4;
  - Piper: TTFA p50 <= 150 ms for a first sentence of at most 12 words (measured at concurrency 1).
The server runs with TALKER_MAX_CONCURRENCY = 8 (no request waits for a slot, so TTFA is the engine and
the CPU, not the queue; --max-concurrency 2, compose's default, shows what queueing for a slot adds)
and one onnxruntime thread per request; the clients are plain sockets in threads
that read the whole body, so they take little CPU from the server.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stack.procs import ManagedProcess, free_port, wait_http  # noqa: E402 - after the path set-up above

ROUTE = "/v1/audio/speech"
# The first sentence has 11 words; about 9 s of speech in all.
TEXT = ("The deployment finished without errors and every check is green. Latency is back under the "
        "objective, and the error budget is safe for this week.")
ESPEAK_P95_GOAL_S, PIPER_P50_GOAL_S = 0.030, 0.150


@contextmanager
def talker_server(log_dir: Path, max_concurrency: int = 8) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "TALKER_HOST": "127.0.0.1",
        "TALKER_PORT": str(port),
        "TALKER_MAX_CONCURRENCY": str(max_concurrency),
        "TALKER_MAX_QUEUE": "64",
        "TALKER_REQUEST_TIMEOUT_S": "120",
        "TALKER_ENGINE_THREADS": "1",
        "TALKER_LOG_LEVEL": "WARNING",
    }
    for name in ("TALKER_API_KEYS", "TALKER_API_KEYS_FILE"):
        env.pop(name, None)
    with ManagedProcess("talker-ttfa-bench", [sys.executable, "-m", "talker"], log_dir=log_dir, env=env,
                        cwd=REPO) as proc:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=180, proc=proc)
        yield "127.0.0.1", port


def one_request(host: str, port: int, model: str) -> tuple[float, int]:
    """(TTFA seconds, body bytes) of one streamed request."""
    body = json.dumps({"model": model, "voice": "alloy", "input": TEXT, "response_format": "pcm"}).encode()
    head = (f"POST {ROUTE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=60) as sock:
        started = time.perf_counter()
        sock.sendall(head + body)
        received = b""
        first_s = 0.0
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
            if not first_s and b"\r\n\r\n" in received:
                status = received.split(b" ", 2)[1]
                if status != b"200":
                    raise RuntimeError(f"HTTP {status.decode()}: {received[:300]!r}")
                if received.split(b"\r\n\r\n", 1)[1]:  # the first body bytes (chunk size + audio) are here
                    first_s = time.perf_counter() - started
    return first_s, len(received)


def run(host: str, port: int, model: str, concurrency: int, requests: int) -> list[float]:
    per_client = max(1, requests // concurrency)
    results: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(per_client):
            ttfa, size = one_request(host, port, model)
            assert size > 100_000, size  # the whole speech arrived, not an error
            with lock:
                results.append(ttfa)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60, help="requests per engine and concurrency")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--engines", default="espeak,piper")
    parser.add_argument("--max-concurrency", type=int, default=8,
                        help="the server's TALKER_MAX_CONCURRENCY (8: nobody queues; compose's default is 2)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    summary: dict[tuple[str, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, talker_server(Path(tmp), args.max_concurrency) as (host, port):
        for engine in args.engines.split(","):
            run(host, port, engine, 2, 4)  # warm-up: first-call costs, connection set-up paths
            for c in levels:
                ttfa = run(host, port, engine, c, args.requests)
                p50, p95 = percentile(ttfa, 50), percentile(ttfa, 95)
                summary[(engine, c)] = (p50, p95)
                print(json.dumps({"engine": engine, "concurrency": c, "requests": len(ttfa),
                                  "ttfa_p50_ms": round(p50 * 1000, 1), "ttfa_p95_ms": round(p95 * 1000, 1),
                                  "ttfa_max_ms": round(max(ttfa) * 1000, 1)}), flush=True)
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    if ("espeak", 4) in summary:
        p95 = summary[("espeak", 4)][1]
        print(f"espeak TTFA p95 at c=4: {p95 * 1000:.1f} ms (goal <= {ESPEAK_P95_GOAL_S * 1000:.0f} ms): "
              f"{'met' if p95 <= ESPEAK_P95_GOAL_S else 'NOT met'}")
    if ("piper", 1) in summary:
        p50 = summary[("piper", 1)][0]
        print(f"Piper TTFA p50 at c=1, first sentence of 11 words: {p50 * 1000:.1f} ms "
              f"(goal <= {PIPER_P50_GOAL_S * 1000:.0f} ms): {'met' if p50 <= PIPER_P50_GOAL_S else 'NOT met'}")


if __name__ == "__main__":
    main()
