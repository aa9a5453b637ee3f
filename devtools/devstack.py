"""`make dev`: the compose stack as local processes on 127.0.0.1, without Docker.

talker, dingtalk-relay, Prometheus, Alertmanager, node-exporter, the SMTP sink (Mailpit API) and the
DingTalk stand-in run from the same config files as compose; only target addresses differ, rewritten by
stack.config_render into a temporary directory. Grafana is Docker-only.

    python -m devtools.devstack [--profile demo|fast|default] [--ports default|auto]

The e2e tests use the Python API: `with DevStack(profile="fast") as stack: stack.urls["prometheus"]`,
`stack.procs["talker"].stop()`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from stack.config_render import CONFIG_SERVICES, render
from stack.defaults import ALERT_TIMEZONE, LISTENERS, LOCAL_HOST
from stack.procs import ManagedProcess, free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
# Debian package that provides each binary (installed on demand when running as root).
BINARIES = {
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus-node-exporter": "prometheus-node-exporter",
}
DINGTALK_ROBOT = ("dev-token", "dev-secret", "告警")  # token, secret, keyword shared by relay and stand-in


def alert_timezone() -> str:
    """Zone of the times in DingTalk messages and e-mails (ALERT_TIMEZONE, as in compose's .env)."""
    return os.environ.get("ALERT_TIMEZONE") or ALERT_TIMEZONE


@dataclass
class StackPorts:
    """The port of each server; by default the ones compose uses (stack.defaults)."""

    talker: int = LISTENERS["talker"].port
    talker_metrics: int = LISTENERS["talker_metrics"].port
    relay: int = LISTENERS["relay"].port
    dingtalk: int = LISTENERS["dingtalk"].port
    smtp: int = LISTENERS["smtp"].port
    mail_http: int = LISTENERS["mail_http"].port
    prometheus: int = LISTENERS["prometheus"].port
    alertmanager: int = LISTENERS["alertmanager"].port
    node_exporter: int = LISTENERS["node_exporter"].port
    llm: int = LISTENERS["llm"].port

    @classmethod
    def auto(cls) -> StackPorts:
        return cls(**{f.name: free_port() for f in fields(cls)})


def ensure_binaries() -> None:
    missing = [pkg for binary, pkg in BINARIES.items() if shutil.which(binary) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing {', '.join(missing)}: sudo apt-get install -y {' '.join(missing)}")
    print(f"installing {', '.join(missing)} (Debian packages) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env)


class DevStack:
    """Start everything (context manager); `urls`, `procs`, `admin_token`, `rendered`, `ports` for callers."""

    def __init__(
        self,
        profile: str = "demo",
        ports: StackPorts | Literal["auto", "default"] = "auto",
        env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        heartbeat_timeout: str | None = None,
    ) -> None:
        self.profile = profile
        self.ports = StackPorts.auto() if ports == "auto" else StackPorts() if ports == "default" else ports
        self.extra_env = dict(env or {})
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="talker-devstack-"))
        self.log_dir = self.workdir / "logs"
        # hex, not urlsafe: a token starting with "-" would read as an option on a command line (`--admin-token X`)
        self.admin_token = self.extra_env.get("TALKER_ADMIN_TOKEN") or secrets.token_hex(16)
        # talker reads it from a 0600 file (TALKER_ADMIN_TOKEN_FILE, as in compose); the summary names the file.
        self.admin_token_file = self.workdir / "secrets" / "talker_admin_token"
        # The bearer token Alertmanager sends to the relay: random per run, only in a 0600 file.
        self.webhook_token_file = self.workdir / "secrets" / "relay_webhook_token"
        self.heartbeat_timeout = heartbeat_timeout or ("30s" if profile == "fast" else "5m")
        self.procs: dict[str, ManagedProcess] = {}
        self._readiness: dict[str, tuple[str, float]] = {}  # name -> (readiness URL, seconds to wait for it)
        self.started = False
        p = self.ports
        local = f"http://{LOCAL_HOST}"
        self.urls = {
            "talker": f"{local}:{p.talker}",
            "talker_metrics": f"{local}:{p.talker_metrics}/metrics",
            "relay": f"{local}:{p.relay}",
            "dingtalk": f"{local}:{p.dingtalk}",
            "mailpit": f"{local}:{p.mail_http}",
            "smtp": f"{LOCAL_HOST}:{p.smtp}",
            "prometheus": f"{local}:{p.prometheus}",
            "alertmanager": f"{local}:{p.alertmanager}",
            "node_exporter": f"{local}:{p.node_exporter}/metrics",
            "llm": f"{local}:{p.llm}",
        }
        # The conversation's LLM: the one the caller names, else the LLM stand-in started here (start_llm).
        self.llm_base_url = {**os.environ, **self.extra_env}.get("TALKER_LLM_BASE_URL") or ""

    # -- process definitions ------------------------------------------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **self.extra_env, **extra}
        # `devtools` and `stack` are packages at the repository root (the stand-in is installed by make install).
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).strip(":")
        return env

    def write_secret_files(self) -> None:
        """The relay webhook token (random per run) and the talker admin token, each in a 0600 file."""
        self.webhook_token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.webhook_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        fd = os.open(self.admin_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(self.admin_token + "\n")

    def _start(self, name: str, argv: list[str], env: dict[str, str], ready_url: str, timeout: float = 60,
               *, wait: bool = True) -> None:
        proc = ManagedProcess(name, argv, log_dir=self.log_dir, env=env, cwd=ROOT)
        self.procs[name] = proc  # registered first: an interrupt right after the fork still stops it
        proc.start()
        self._readiness[name] = (ready_url, timeout)
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str) -> None:
        """Wait until a started server answers its readiness URL (its log tail if it dies first)."""
        ready_url, timeout = self._readiness[name]
        wait_http(ready_url, timeout=timeout, proc=self.procs[name])

    def start_mail(self) -> None:
        p = self.ports
        self._start("mailsink", [sys.executable, "-m", "devtools.mailsink", "--smtp-port", str(p.smtp),
                                 "--http-port", str(p.mail_http), "--no-auth"],
                    self._env(), f"{self.urls['mailpit']}/readyz")

    def start_dingtalk(self) -> None:
        robot = ":".join(DINGTALK_ROBOT)
        self._start("dingtalk-standin", [sys.executable, "-m", "dingtalk_standin", "--port",
                                         str(self.ports.dingtalk), "--robot", robot],
                    self._env(), f"{self.urls['dingtalk']}/healthz")

    def start_relay(self) -> None:
        token, secret, keyword = DINGTALK_ROBOT
        env = self._env(
            RELAY_HOST=LOCAL_HOST, RELAY_PORT=str(self.ports.relay), RELAY_DINGTALK_API_BASE=self.urls["dingtalk"],
            RELAY_DINGTALK_TOKEN=token, RELAY_DINGTALK_SECRET=secret, RELAY_DINGTALK_KEYWORD=keyword,
            RELAY_HEARTBEAT_TIMEOUT=self.heartbeat_timeout, RELAY_TIMEZONE=alert_timezone(),
            RELAY_WEBHOOK_TOKEN_FILE=str(self.webhook_token_file), RELAY_WEBHOOK_TOKEN="",
        )
        self._start("dingtalk-relay", [sys.executable, "-m", "dingtalk_relay"], env, f"{self.urls['relay']}/healthz")

    def start_llm(self) -> None:
        """The LLM stand-in (scripted replies, streamed), unless TALKER_LLM_BASE_URL names a real server."""
        if self.llm_base_url:
            return
        self._start("llm-standin", [sys.executable, "-m", "llm_standin", "--host", LOCAL_HOST, "--port",
                                    str(self.ports.llm)], self._env(), f"{self.urls['llm']}/healthz")
        self.llm_base_url = f"{self.urls['llm']}/v1"

    def start_talker(self, *, wait: bool = True) -> None:
        env = self._env(
            TALKER_LLM_BASE_URL=self.llm_base_url or f"{self.urls['llm']}/v1",
            TALKER_HOST=LOCAL_HOST, TALKER_PORT=str(self.ports.talker),
            TALKER_METRICS_PORT=str(self.ports.talker_metrics), TALKER_ADMIN_TOKEN_FILE=str(self.admin_token_file),
        )
        env.pop("TALKER_ADMIN_TOKEN", None)  # the file is the one source (talker refuses both)
        # /readyz: engines loaded, so traffic right after start is served, not refused.
        self._start("talker", [sys.executable, "-m", "talker"], env, f"{self.urls['talker']}/readyz", timeout=120,
                    wait=wait)

    def start_node_exporter(self) -> None:
        self._start("node-exporter", ["prometheus-node-exporter",
                                      f"--web.listen-address={LOCAL_HOST}:{self.ports.node_exporter}"],
                    self._env(), self.urls["node_exporter"])

    def render_config(self) -> None:
        # Every service the renderer knows runs here, on its StackPorts port (no dcgm-exporter: no GPU overlay).
        addresses = {service: f"{LOCAL_HOST}:{getattr(self.ports, key)}" for service, key in CONFIG_SERVICES.items()
                     if hasattr(self.ports, key)}
        env = {"SMTP_REQUIRE_TLS": "false", **os.environ, **self.extra_env}
        env.setdefault("ALERTMANAGER_URL", self.urls["alertmanager"])
        env.setdefault("PROMETHEUS_URL", self.urls["prometheus"])
        env["RELAY_WEBHOOK_TOKEN_FILE"] = str(self.webhook_token_file)
        self.rendered = render(self.workdir / "config", profile=self.profile, env=env, addresses=addresses)

    def start_alertmanager(self) -> None:
        argv = ["prometheus-alertmanager", f"--config.file={self.rendered.alertmanager_config}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address={LOCAL_HOST}:{self.ports.alertmanager}", *self.rendered.alertmanager_args]
        # Alert e-mails print times in local time: the same zone as the relay's DingTalk messages.
        self._start("alertmanager", argv, self._env(TZ=alert_timezone()), f"{self.urls['alertmanager']}/-/ready")

    def start_prometheus(self) -> None:
        argv = ["prometheus", f"--config.file={self.rendered.prometheus_config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address={LOCAL_HOST}:{self.ports.prometheus}", "--web.enable-lifecycle",
                *self.rendered.prometheus_args]
        self._start("prometheus", argv, self._env(), f"{self.urls['prometheus']}/-/ready")

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> DevStack:
        ensure_binaries()
        try:
            self.write_secret_files()
            self.start_llm()  # before talker, which calls it on the first chat turn
            # talker loads its engines for seconds: it starts first and is waited for last.
            self.start_talker(wait=False)
            # Receivers before Alertmanager, so nothing it sends at start-up is refused.
            self.start_mail()
            self.start_dingtalk()
            self.start_relay()
            self.start_node_exporter()
            self.render_config()
            self.start_alertmanager()
            self.start_prometheus()
            self.wait_ready("talker")
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        if self._own_workdir and not os.environ.get("DEVSTACK_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> str:
        u = self.urls
        return "\n".join([
            f"talker-stack dev ({self.profile} profile), logs in {self.log_dir}",
            f"  talker API        {u['talker']}/   (demo page; metrics {u['talker_metrics']})",
            f"  admin token       in {self.admin_token_file}   (POST {u['talker']}/admin/faults)",
            f"  Prometheus        {u['prometheus']}/",
            f"  Alertmanager      {u['alertmanager']}/",
            f"  dingtalk-relay    {u['relay']}/metrics   (webhook token in {self.webhook_token_file})",
            f"  DingTalk inbox    {u['dingtalk']}/   (stand-in)",
            f"  mail inbox        {u['mailpit']}/   (SMTP {u['smtp']}, Mailpit API)",
            f"  node-exporter     {u['node_exporter']}",
            f"  LLM               {self.llm_base_url}"
            + ("   (stand-in: scripted replies)" if "llm-standin" in self.procs else ""),
            f"  conversation      ws://{LOCAL_HOST}:{self.ports.talker}/v1/chat/ws",
            "  Grafana           Docker only: `make up` (this stack has no Grafana)",
            f"smoke test:  TALKER_ADMIN_TOKEN_FILE={self.admin_token_file} make smoke",
        ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run talker-stack as local processes (no Docker).")
    parser.add_argument("--profile", default=os.environ.get("ALERT_PROFILE", "demo"),
                        choices=["default", "demo", "fast"], help="alert timings (demo: alerts within ~1 min)")
    parser.add_argument("--ports", choices=["default", "auto"], default="default",
                        help="default: the compose ports on 127.0.0.1; auto: free ports")
    args = parser.parse_args(argv)
    print("Starting talker, relay, DingTalk stand-in, mail sink, node-exporter, Alertmanager, Prometheus ...")
    print("Grafana is not part of `make dev` (Docker only: `make up`).", flush=True)
    stop = threading.Event()
    stack = DevStack(profile=args.profile, ports=args.ports)

    def on_signal(signum: int, _frame: object) -> None:
        if not stack.started and not stop.is_set():
            stop.set()
            # Still starting (talker may take a minute): abort now; start() stops what it started.
            raise KeyboardInterrupt
        stop.set()

    # SIGHUP too: a closed terminal must not leave the servers (in their own sessions) running.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        stack.start()
    except KeyboardInterrupt:
        print("interrupted during start-up; everything started so far was stopped", flush=True)
        return 130
    try:
        print(stack.summary(), flush=True)
        print("Ctrl-C stops everything.", flush=True)
        reported: set[str] = set()
        while not stop.wait(2.0):
            for name, proc in stack.procs.items():
                if not proc.running() and name not in reported:
                    reported.add(name)
                    print(f"!! {name} exited ({proc.poll()}); last log lines:\n{proc.log_tail(15)}", flush=True)
        print("stopping ...", flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
