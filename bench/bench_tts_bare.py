"""/v1/tts over HTTP against the bare espeak-ng engine (not run by `make test`).

    .venv/bin/python bench/bench_tts_bare.py [--duration 5] [--rounds 3] [--connections 2]

Two loads over the same sentences, alternated round after round in one run:
  bare  espeak-ng's C API called in a loop through ctypes (espeak_Synth with a callback that only
        returns 0: no events, no prosody, no WAV), from `--connections` threads around the library's
        global lock, in this process;
  http  a real talker server (`python -m talker`, production settings: uvicorn, no reload, JSON logs
        at INFO to a file, metrics on their own port) loaded by `wrk` (a C load generator, so the client
        does not take the server's CPU) with `--connections` keep-alive connections.
Prints a JSON line per run, then the medians: req/s of both, the HTTP/bare ratio (median of the
per-round ratios; goal >= 0.85), latency percentiles, and CPU milliseconds per request of both
(bare: this process; http: the server process), which a busy shared box distorts less than req/s.
Run the final measurement alone: `flock /tmp/heavy.lock .venv/bin/python bench/bench_tts_bare.py`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stack.procs import ManagedProcess, free_port, wait_http  # noqa: E402

# Short sentences of the kind the stack speaks (alert digests): a few ms of engine time each, so the
# per-request cost of everything around the engine shows.
SENTENCES = (
    "Good evening, this is the on-call digest.",
    "All services are healthy.",
    "The error rate is low and the queue is empty.",
    "Disk usage on the database host is at eighty percent.",
    "Two alerts fired in the last hour and both are resolved.",
    "The payment service answered slowly between nine and ten.",
    "No action is needed tonight.",
    "Latency is back under the objective.",
)
VOICE = "en-us"
GOAL = 0.85
# What this bench measured on the shared 2-core box, before/after the wrapper work (services/talker/README.md).
RECORDED = ("recorded 2026-12-02, 3 before/after pairs of 5 rounds: ratio 0.70/0.52/0.52 before (main a65e439), "
            "0.90/0.62/0.64 after; server CPU per request 5.7-6.1 ms before, 5.0-5.3 ms after (bare 2.8-3.2 ms); "
            "2026-12-07, 5 pairs of 3 rounds, 23aae1f -> eb2b221 (quick jobs on the event loop): median ratio "
            "0.76 -> 0.79, server CPU 2.70 -> 2.45 ms (bare 1.92-1.99 ms, load 0.2-3.3); then 3 pairs, 367eaee -> "
            "quick jobs on their own thread: 0.795/0.795/0.802 -> 0.942/0.953/0.955, server CPU 2.39-2.43 -> "
            "2.43-2.49 ms (load 0.15-1.0)")

# speak_lib.h: synchronous output, UTF-8 text, positions in characters.
_AUDIO_OUTPUT_SYNCHRONOUS, _CHARS_UTF8, _POS_CHARACTER = 2, 1, 1
_BUFFER_MS = 5000  # the engine at its best: few callbacks per sentence (talker uses the same size)
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass
class Run:
    kind: str
    seconds: float
    requests: int
    errors: int
    cpu_s: float  # CPU time of whoever did the synthesis (this process for bare, the server for http)
    latencies_ms: dict[str, float] = field(default_factory=dict)  # p50/p90/p99

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_req(self) -> float:
        return 1000 * self.cpu_s / self.requests if self.requests else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind, "requests": self.requests, "errors": self.errors, "req_per_s": round(self.req_per_s, 1),
            "cpu_ms_per_req": round(self.cpu_ms_per_req, 3), **{k: round(v, 2) for k, v in self.latencies_ms.items()},
        }


class BareEspeak:
    """espeak-ng with nothing of ours around it: initialise once, then espeak_Synth per sentence."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data = espeakng_loader.get_data_path().encode()
        if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data, 0) <= 0:  # options 0: no events
            raise RuntimeError("espeak_Initialize failed")
        self._callback = _CALLBACK(lambda _wav, _n, _events: 0)  # referenced for the library's lifetime
        lib.espeak_SetSynthCallback(self._callback)
        if lib.espeak_SetVoiceByName(VOICE.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {VOICE}")
        self._lib = lib
        self._lock = threading.Lock()  # the library is one global synthesizer
        self._texts = [s.encode() + b"\0" for s in SENTENCES]

    def synth(self, i: int) -> None:
        text = self._texts[i % len(self._texts)]
        with self._lock:
            if self._lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
                raise RuntimeError("espeak_Synth failed")

    def load(self, connections: int, duration_s: float) -> Run:
        for i in range(len(self._texts)):  # warm: voice data paged in
            self.synth(i)
        latencies: list[float] = []
        counter = iter(range(1 << 62))
        deadline = time.perf_counter() + duration_s

        def worker() -> None:
            mine: list[float] = []
            while (now := time.perf_counter()) < deadline:
                self.synth(next(counter))
                mine.append(time.perf_counter() - now)
            latencies.extend(mine)

        threads = [threading.Thread(target=worker) for _ in range(connections)]
        cpu0, t0 = time.process_time(), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        ordered = sorted(latencies)
        pct = {f"p{p}_ms": 1000 * ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
               for p in (50, 90, 99)}
        return Run("bare", seconds, len(latencies), 0, cpu, pct)


# wrk: rotate through the same sentences; print one JSON line from done() with the counts and percentiles.
_WRK_LUA = """
local bodies = {%(bodies)s}
local requests = {}
local i = 0
init = function(args)
  for k, body in ipairs(bodies) do
    requests[k] = wrk.format("POST", "/v1/tts", {["Content-Type"] = "application/json"}, body)
  end
end
request = function()
  i = i %% #requests + 1
  return requests[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %%d, "duration_us": %%d, "errors": %%d, '
    .. '"p50_ms": %%.3f, "p90_ms": %%.3f, "p99_ms": %%.3f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
"""


def write_wrk_script(path: Path) -> None:
    bodies = ", ".join(f"[==[{json.dumps({'text': s, 'voice': VOICE})}]==]" for s in SENTENCES)
    path.write_text(_WRK_LUA % {"bodies": bodies})


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk_load(url: str, script: Path, server_pid: int, connections: int, duration_s: float) -> Run:
    cpu0 = process_cpu_s(server_pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=duration_s + 60,
    ).stdout
    cpu = process_cpu_s(server_pid) - cpu0
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    got = json.loads(line.removeprefix("WRK_JSON "))
    pct = {k: got[k] for k in ("p50_ms", "p90_ms", "p99_ms")}
    return Run("http", got["duration_us"] / 1e6, got["requests"], got["errors"], cpu, pct)


@contextmanager
def talker_server(log_dir: Path) -> Iterator[tuple[str, int]]:
    """`python -m talker` as compose runs it (INFO JSON logs, metrics on their own port, default limits)."""
    port = free_port()
    env = {**os.environ, "TALKER_HOST": "127.0.0.1", "TALKER_PORT": str(port),
           "TALKER_METRICS_PORT": str(free_port()), "TALKER_LOG_LEVEL": "INFO"}
    with ManagedProcess("talker", [sys.executable, "-m", "talker"], log_dir=log_dir, env=env, cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", timeout=180, proc=proc)
        yield url, proc.pid


def check_answers(url: str) -> None:
    """Every sentence the load sends is answered with a WAV (wrk only counts statuses)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for text in SENTENCES:
            response = client.post("/v1/tts", json={"text": text, "voice": VOICE})
            wav = response.content
            if response.status_code != 200 or wav[:4] != b"RIFF" or len(wav) < 1000:
                raise RuntimeError(f"/v1/tts answered {response.status_code} with {len(wav)} bytes for {text!r}")


def report(values: dict[str, object]) -> None:
    print(json.dumps(values), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="bare/http rounds, alternated (medians)")
    parser.add_argument("--connections", type=int, default=2, help="concurrency of both loads")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    bare = BareEspeak()
    runs: dict[str, list[Run]] = {"bare": [], "http": []}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-tts-bare-") as tmp, talker_server(Path(tmp)) as (url, pid):
        script = Path(tmp) / "tts.lua"
        write_wrk_script(script)
        check_answers(url)
        wrk_load(f"{url}/v1/tts", script, pid, args.connections, 1)  # warm the server's pools and caches
        for round_no in range(args.rounds):
            # Alternate which goes first, so a load that starts or stops elsewhere mid-round hits both alike.
            order = ("bare", "http") if round_no % 2 == 0 else ("http", "bare")
            for kind in order:
                if kind == "bare":
                    run = bare.load(args.connections, args.duration)
                else:
                    run = wrk_load(f"{url}/v1/tts", script, pid, args.connections, args.duration)
                    if run.errors:
                        raise RuntimeError(f"wrk saw {run.errors} failed requests (see {tmp}/talker.log)")
                runs[kind].append(run)
                report({"round": round_no, **run.as_dict()})
            ratios.append(runs["http"][-1].req_per_s / runs["bare"][-1].req_per_s)

    def med(kind: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) if attr in ("req_per_s", "cpu_ms_per_req") else r.latencies_ms[attr]
                                 for r in runs[kind])

    ratio = statistics.median(ratios)
    cpu_ratio = med("bare", "cpu_ms_per_req") / med("http", "cpu_ms_per_req")
    summary: dict[str, object] = {
        "bench": "tts_http_vs_bare", "connections": args.connections, "rounds": args.rounds,
        "bare_req_per_s": round(med("bare", "req_per_s"), 1), "http_req_per_s": round(med("http", "req_per_s"), 1),
        "http_over_bare": round(ratio, 3), "round_ratios": [round(r, 3) for r in ratios],
        "bare_cpu_ms_per_req": round(med("bare", "cpu_ms_per_req"), 3),
        "http_cpu_ms_per_req": round(med("http", "cpu_ms_per_req"), 3), "bare_cpu_over_http_cpu": round(cpu_ratio, 3),
        **{f"{kind}_{p}": round(med(kind, p), 2) for kind in ("bare", "http") for p in ("p50_ms", "p90_ms", "p99_ms")},
    }
    report(summary)
    print(
        f"\n/v1/tts at concurrency {args.connections} ({len(SENTENCES)} sentences, median of {args.rounds} rounds): "
        f"bare espeak-ng {summary['bare_req_per_s']} req/s, HTTP {summary['http_req_per_s']} req/s "
        f"-> ratio {ratio:.2f} (goal >= {GOAL})\n"
        f"latency p50/p90/p99 ms: bare {summary['bare_p50_ms']}/{summary['bare_p90_ms']}/{summary['bare_p99_ms']}, "
        f"HTTP {summary['http_p50_ms']}/{summary['http_p90_ms']}/{summary['http_p99_ms']}\n"
        f"CPU per request: bare {summary['bare_cpu_ms_per_req']} ms, server {summary['http_cpu_ms_per_req']} ms "
        f"-> {cpu_ratio:.2f}\n"
        f"{RECORDED}"
    )


if __name__ == "__main__":
    main()
