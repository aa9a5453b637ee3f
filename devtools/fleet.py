"""A compose box's Prometheus remote-writing to a central Prometheus, as local processes.

The fleet test (tests/stack_tests/test_stack_fleet.py) and bench/bench_remote_write.py use it: one talker
(espeak only), the box's Prometheus rendered by stack.config_render exactly as compose renders it (same
rules, `remote_write` from PROMETHEUS_REMOTE_WRITE_*, `cluster`/`env`/`box` external labels) and a central
Prometheus started with `--web.enable-remote-write-receiver` that requires basic auth (`--web.config.file`,
bcrypt hash). Credentials reach the box's Prometheus only as files.

    with LocalFleet(workdir) as fleet:
        fleet.query("central", 'up{job="talker"}')
        fleet.sample_delays('up{job="talker"}', samples=10)
"""

from __future__ import annotations

import base64
import os
import secrets
import statistics
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from stack.config_render import RenderedConfig, render
from stack.http_client import get_json, get_text, request
from stack.procs import ManagedProcess, free_port, poll_until, wait_http
from stack.prometheus_text import metric_sum

CENTRAL_USER = "fleet-writer"


@dataclass
class Delays:
    """Seconds from a sample's scrape timestamp on the box to the moment it could be queried."""

    central: list[float] = field(default_factory=list)
    box: list[float] = field(default_factory=list)

    @staticmethod
    def _summary(values: list[float]) -> str:
        if not values:
            return "no samples"
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return (f"n={len(values)} p50={statistics.median(ordered):.2f}s p95={p95:.2f}s "
                f"min={ordered[0]:.2f}s max={ordered[-1]:.2f}s")

    def report(self) -> str:
        return (f"box -> central (remote write): {self._summary(self.central)}\n"
                f"box itself (scrape -> queryable): {self._summary(self.box)}")


class LocalFleet:
    """talker + box Prometheus (remote_write) + central Prometheus (receiver, basic auth). Context manager."""

    def __init__(
        self,
        workdir: Path,
        *,
        cluster: str = "fleet-test",
        box: str = "box-1",
        remote_write_url: str | None = None,
        auth: str = "basic",
        password: str | None = None,
    ) -> None:
        """`remote_write_url` None: the central Prometheus started here; `auth`: "basic" (the central's
        user, `password` overriding the right one) or "bearer" (a random token, for a receiver of your own)."""
        self.workdir = Path(workdir)
        self.cluster, self.box = cluster, box
        self.ports = {name: free_port() for name in ("talker", "talker-metrics", "box", "central")}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        self.central_password = secrets.token_urlsafe(18)
        self.bearer_token = secrets.token_urlsafe(24)
        self.remote_write_url = remote_write_url or f"{self.urls['central']}/api/v1/write"
        self.auth = auth
        self.box_password = password if password is not None else self.central_password
        self.procs: dict[str, ManagedProcess] = {}
        self.rendered: RenderedConfig | None = None

    # -- set-up -----------------------------------------------------------------------------------------------
    def _secret_file(self, name: str, value: str) -> Path:
        path = self.workdir / "secrets" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
        return path

    def box_env(self) -> dict[str, str]:
        """The environment config-init would get in compose for this box."""
        env = {"CLUSTER_NAME": self.cluster, "STACK_BOX": self.box,
               "PROMETHEUS_REMOTE_WRITE_URL": self.remote_write_url}
        if self.auth == "basic":
            env["PROMETHEUS_REMOTE_WRITE_USERNAME"] = CENTRAL_USER
            secret = self._secret_file("prometheus_remote_write", self.box_password)
        elif self.auth == "bearer":
            secret = self._secret_file("prometheus_remote_write", self.bearer_token)
        else:
            raise ValueError(f"auth must be basic or bearer, not {self.auth!r}")
        env["PROMETHEUS_REMOTE_WRITE_AUTH"] = self.auth
        env["PROMETHEUS_REMOTE_WRITE_CREDENTIALS_FILE"] = str(secret)
        return env

    def _central_config(self) -> tuple[Path, Path]:
        directory = self.workdir / "central"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        # A store only: it scrapes nothing and evaluates no rules (the boxes send their recorded series).
        config.write_text("global: {}\n", encoding="utf-8")
        web = directory / "web.yml"
        hashed = bcrypt.hashpw(self.central_password.encode(), bcrypt.gensalt(rounds=10)).decode()
        web.write_text(yaml.safe_dump({"basic_auth_users": {CENTRAL_USER: hashed}}), encoding="utf-8")
        return config, web

    def start(self) -> LocalFleet:
        logs = self.workdir / "logs"
        self.rendered = render(self.workdir / "box", profile="fast", env=self.box_env(),
                               addresses={"talker": f"127.0.0.1:{self.ports['talker-metrics']}",
                                          "prometheus": f"127.0.0.1:{self.ports['box']}"})
        central_config, web_config = self._central_config()
        talker_env = {**os.environ, "TALKER_HOST": "127.0.0.1", "TALKER_PORT": str(self.ports["talker"]),
                      "TALKER_METRICS_PORT": str(self.ports["talker-metrics"]), "TALKER_ENABLE_PIPER": "false"}
        commands = {
            "talker": [sys.executable, "-m", "talker"],
            "central": ["prometheus", f"--config.file={central_config}", f"--web.config.file={web_config}",
                        f"--storage.tsdb.path={self.workdir / 'central-data'}", "--web.enable-remote-write-receiver",
                        f"--web.listen-address=127.0.0.1:{self.ports['central']}"],
            "box": ["prometheus", f"--config.file={self.rendered.prometheus_config}",
                    f"--storage.tsdb.path={self.workdir / 'box-data'}",
                    f"--web.listen-address=127.0.0.1:{self.ports['box']}", *self.rendered.prometheus_args],
        }
        try:
            for name, argv in commands.items():
                self.procs[name] = ManagedProcess(name, argv, log_dir=logs, env=talker_env).start()
            wait_http(f"{self.urls['talker']}/readyz", timeout=90, proc=self.procs["talker"])
            wait_http(f"{self.urls['box']}/-/ready", timeout=30, proc=self.procs["box"])
            poll_until(lambda: self.query("central", "vector(1)") is not None, timeout=30, what="central ready")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def __enter__(self) -> LocalFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{proc.log_tail(15)}" for name, proc in self.procs.items())

    # -- queries ----------------------------------------------------------------------------------------------
    def _get(self, where: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.urls[where]}{path}?{urllib.parse.urlencode(params)}"
        headers = {}
        if where == "central":
            auth = base64.b64encode(f"{CENTRAL_USER}:{self.central_password}".encode()).decode()
            headers["Authorization"] = f"Basic {auth}"
        payload: dict[str, Any] = get_json(url, headers=headers)
        if payload.get("status") != "success":
            raise RuntimeError(f"{where} {path} {params}: {payload}")
        return payload

    def query(self, where: str, expr: str) -> list[dict[str, Any]]:
        """Instant query on "box" or "central"; the result list (an error raises)."""
        result: list[dict[str, Any]] = self._get(where, "/api/v1/query", {"query": expr})["data"]["result"]
        return result

    def box_metric(self, name: str, /, **labels: str) -> float:
        """Sum of a metric in the box Prometheus' own exposition (e.g. its remote-storage counters)."""
        return metric_sum(get_text(f"{self.urls['box']}/metrics"), name, **labels)

    def talk(self, path: str, body: dict[str, Any]) -> int:
        return request("POST", f"{self.urls['talker']}{path}", body, timeout=60).status

    def sample_delays(self, expr: str, *, samples: int, timeout: float = 120.0, interval: float = 0.1) -> Delays:
        """Poll both Prometheus for the raw samples of `expr` (one series) and time each new one's arrival.

        Every sample carries its scrape timestamp; the delay of a sample is the wall-clock moment it first
        shows up in a query minus that timestamp. Samples that already existed when polling starts are not
        counted. Stops after `samples` new samples reached the central store.
        """
        delays = Delays()
        seen: dict[str, set[float]] = {"central": set(), "box": set()}
        window = f"{expr}[2m]"
        for where in seen:  # what is there before we start watching
            for series in self.query(where, window):
                seen[where].update(float(ts) for ts, _ in series["values"])
        deadline = time.monotonic() + timeout
        while len(delays.central) < samples:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(delays.central)} of {samples} samples reached the central store "
                                   f"in {timeout:.0f}s\n{self.logs()}")
            for where, out in (("central", delays.central), ("box", delays.box)):
                for series in self.query(where, window):
                    now = time.time()
                    for ts, _ in series["values"]:
                        stamp = float(ts)
                        if stamp not in seen[where]:
                            seen[where].add(stamp)
                            out.append(now - stamp)
            time.sleep(interval)
        return delays
