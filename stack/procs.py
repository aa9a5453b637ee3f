"""Start, wait for and stop local processes without leaving any behind.

Used by `make dev`, the end-to-end tests and the cross-check tests: one implementation of
"start a server, poll until it answers, kill its whole process group on exit".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

from stack.http_client import http_status

T = TypeVar("T")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll_until(check: Callable[[], T | None], *, timeout: float, interval: float = 0.2, what: str = "") -> T:
    """Call check() until it returns something truthy or the deadline passes (then TimeoutError)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or check}{detail}")
        time.sleep(interval)


def wait_http(url: str, *, timeout: float = 60.0, status: int = 200, proc: ManagedProcess | None = None) -> None:
    """Poll url until it answers with `status`; fail early with the log tail if proc exits."""

    def check() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.poll()} before {url} was up:\n{proc.log_tail()}")
        return http_status(url) == status

    try:
        poll_until(check, timeout=timeout, what=url)
    except RuntimeError:
        raise
    except TimeoutError as exc:
        tail = f"\n{proc.name} log tail:\n{proc.log_tail()}" if proc is not None else ""
        raise TimeoutError(f"{exc}{tail}") from None


class ManagedProcess:
    """A child process in its own process group, logging to a file, stopped with its children."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_dir) / f"{name}.log"
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # own process group: stop() kills grandchildren too
        )
        return self

    @property
    def pid(self) -> int:
        assert self._popen is not None, f"{self.name} not started"
        return self._popen.pid

    def poll(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal(self, sig: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if it has not exited after `timeout`."""
        if self._popen is not None:
            self.signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self._popen.wait(timeout=timeout)
            # The leader may be gone while children linger in its group: sweep them.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
