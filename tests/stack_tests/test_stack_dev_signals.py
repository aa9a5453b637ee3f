"""`make dev` (python -m devtools.devstack) leaves no process behind on Ctrl-C, whether the stack is up or still
starting. Every process it starts inherits a marker in its environment; afterwards none may carry it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from stack.procs import poll_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def marked_pids(marker: str) -> set[int]:
    """Live (non-zombie) processes whose environment carries the marker."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "environ").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.add(int(entry.name))
    return found


class DevProcess:
    def __init__(self) -> None:
        self.marker = f"DEVSTACK_SIGNAL_TEST={uuid.uuid4().hex}"
        key, value = self.marker.split("=")
        env = {**os.environ, key: value, "TALKER_ENABLE_PIPER": "false", "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "devtools.devstack", "--ports", "auto", "--profile", "fast"]
        self.proc = subprocess.Popen(argv,
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def interrupt_and_wait(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.reader.join(timeout=5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in marked_pids(self.marker):
            os.kill(pid, signal.SIGKILL)


# SIGHUP: the terminal running `make dev` was closed.
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_stack_dev_ctrl_c_once_up_stops_every_process(sig: int) -> None:
    dev = DevProcess()
    try:
        poll_until(lambda: "Ctrl-C stops everything." in dev.output() or dev.proc.poll() is not None,
                   timeout=180, what="make dev to report the stack up")
        assert dev.proc.poll() is None, dev.output()
        started = marked_pids(dev.marker) - {dev.proc.pid}
        assert len(started) >= 7, f"expected the seven servers, found {started}"
        assert dev.interrupt_and_wait(sig) == 0, dev.output()
        leftover = poll_until(lambda: not marked_pids(dev.marker), timeout=15, what="no process left")
        assert leftover
    finally:
        dev.kill()


def test_stack_dev_ctrl_c_during_start_up_stops_what_was_started() -> None:
    dev = DevProcess()
    try:
        poll_until(lambda: marked_pids(dev.marker) - {dev.proc.pid}, timeout=60, what="a first server started")
        assert dev.interrupt_and_wait() == 130, dev.output()
        assert "interrupted during start-up" in dev.output()
        poll_until(lambda: not marked_pids(dev.marker), timeout=15, what="no process left")
    finally:
        dev.kill()
