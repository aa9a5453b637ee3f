"""Get a working Docker engine and Compose v2 on a Debian bookworm host that has no registry access.

`python -m offline.docker_env` installs docker.io when missing (root only), starts one dockerd when none
answers, and fetches Compose v2 from Debian trixie's `docker-compose` package into
~/.docker/cli-plugins without touching the system's apt state (private sources/lists/cache dirs).
The compose end-to-end test calls the same functions and fails with the reason when any step fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from stack.procs import poll_until

COMPOSE_PLUGIN = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
APT_CACHE = Path(os.environ.get("STACK_APT_CACHE", "/var/cache/talker-stack-apt"))
TRIXIE_SOURCES = """Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


class DockerUnavailable(RuntimeError):
    """The engine or Compose v2 could not be made available; the message says which step failed."""


def _run(argv: list[str], *, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        output = proc.stdout[-2000:] + proc.stderr[-2000:]
        raise DockerUnavailable(f"{' '.join(argv)} failed ({proc.returncode}):\n{output}")
    return proc


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def _is_root() -> bool:
    return os.geteuid() == 0


def install_packages() -> None:
    """docker.io and debootstrap from the host's normal apt sources (bookworm)."""
    missing = [tool for tool in ("dockerd", "debootstrap") if shutil.which(tool) is None]
    if not missing:
        return
    if not _is_root():
        raise DockerUnavailable(f"{', '.join(missing)} missing and not root: apt-get install docker.io debootstrap")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "docker.io", "debootstrap"]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
        if proc.returncode != 0:
            raise DockerUnavailable(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")


DOCKERD_LOG = Path("/tmp/dockerd.log")  # noqa: S108 - the one shared engine log FACTS.md documents


def start_engine(log_path: Path = DOCKERD_LOG, timeout: float = 60) -> None:
    """Start one dockerd unless one already answers (never a second: it would fight over docker0)."""
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        raise DockerUnavailable("dockerd is not installed")
    if not _is_root():
        raise DockerUnavailable("no Docker engine answers and only root can start dockerd")
    # A dockerd may be starting already (e.g. started by another test run): wait for it instead.
    already = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0
    if not already:
        with open(log_path, "ab") as log:
            subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        poll_until(engine_answers, timeout=timeout, interval=0.5, what="docker info")
    except TimeoutError as exc:
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else "(no log)"
        raise DockerUnavailable(f"dockerd did not become ready: {exc}\n{tail}") from None


def compose_version() -> str | None:
    if shutil.which("docker") is None:
        return None
    proc = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else None


def install_compose() -> str:
    """Compose v2 as a CLI plugin from trixie's docker-compose .deb; returns its version."""
    version = compose_version()
    if version:
        return version
    sources = APT_CACHE / "sources.list.d"
    lists = APT_CACHE / "lists"
    cache = APT_CACHE / "cache"
    for d in (sources, lists / "partial", cache / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    (sources / "trixie.sources").write_text(TRIXIE_SOURCES)
    apt_opts = [
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", f"Dir::Etc::SourceParts={sources}",
        "-o", f"Dir::State::Lists={lists}",
        "-o", f"Dir::Cache={cache}",
        "-o", "Debug::NoLocking=1",
    ]
    debs = sorted(cache.glob("docker-compose_*.deb"))
    if not debs:
        _run(["apt-get", *apt_opts, "update", "-q"], timeout=300)
        with tempfile.TemporaryDirectory() as tmp:
            # `apt-get download` writes into the current directory.
            proc = subprocess.run(["apt-get", *apt_opts, "download", "docker-compose"], cwd=tmp,
                                  capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise DockerUnavailable(f"apt-get download docker-compose (trixie) failed:\n{proc.stderr[-2000:]}")
            for deb in Path(tmp).glob("docker-compose_*.deb"):
                shutil.move(str(deb), cache / deb.name)
        debs = sorted(cache.glob("docker-compose_*.deb"))
    if not debs:
        raise DockerUnavailable("trixie's docker-compose .deb was not downloaded")
    with tempfile.TemporaryDirectory() as tmp:
        _run(["dpkg-deb", "-x", str(debs[-1]), tmp])
        plugin = Path(tmp) / "usr/libexec/docker/cli-plugins/docker-compose"
        if not plugin.exists():
            raise DockerUnavailable(f"{debs[-1].name} has no usr/libexec/docker/cli-plugins/docker-compose")
        COMPOSE_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(plugin, COMPOSE_PLUGIN)
        COMPOSE_PLUGIN.chmod(0o755)
    version = compose_version()
    if not version:
        raise DockerUnavailable(f"{COMPOSE_PLUGIN} installed but `docker compose version` fails")
    return version


def ensure_docker() -> str:
    """Engine up and Compose v2 present; returns the Compose version. Raises DockerUnavailable."""
    install_packages()
    start_engine()
    return install_compose()


def main() -> int:
    try:
        version = ensure_docker()
    except DockerUnavailable as exc:
        print(f"docker: {exc}", file=sys.stderr)
        return 1
    print(f"Docker engine up, Compose {version} ({COMPOSE_PLUGIN})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
