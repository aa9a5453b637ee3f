"""Build the images an offline site (and the compose end-to-end test) needs, without any registry.

- local/debian:bookworm        debootstrap --variant=minbase → docker import (retried: debootstrap flakes)
- local/python:3.11-bookworm   Debian's python3 (3.11, matches the host's cp311 wheels): our BASE_IMAGE
- local/{prometheus,alertmanager,node-exporter}-standin   Debian's packages behind the upstream entrypoints
- local/mailpit-standin        our SMTP sink with the Mailpit API subset
- local/talker-lb-standin      Debian's HAProxy 2.6 behind the haproxy image's interface (talker-lb)
- .cache/wheels                every wheel our images install (`pip download` on the host, where https works)

Each step is skipped when its result exists (`docker image inspect`, a stamp in the wheel dir), so reruns
take seconds. `python -m offline.images [--wheels-only]`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = ROOT / "offline" / "recipes"
WHEELS_DIR = ROOT / ".cache" / "wheels"
DEBIAN_MIRROR = "http://deb.debian.org/debian"

DEBIAN_IMAGE = "local/debian:bookworm"
PYTHON_IMAGE = "local/python:3.11-bookworm"
MONITORING_IMAGE = "local/monitoring-standin:bookworm"
STANDIN_IMAGES = {
    "prometheus": "local/prometheus-standin:bookworm",
    "alertmanager": "local/alertmanager-standin:bookworm",
    "node-exporter": "local/node-exporter-standin:bookworm",
    "mailpit": "local/mailpit-standin:latest",
    "talker-lb": "local/talker-lb-standin:bookworm",
}
# What the images pip-install: the locked dependencies of both services (hash-checked, as the images check
# them again) and, for the Mailpit stand-in, our SMTP sink's.
LOCKS = [ROOT / "locks/talker.txt", ROOT / "locks/torch-cpu.txt", ROOT / "locks/relay.txt"]
SINK_REQUIREMENTS = ["aiosmtpd"]


class ImageBuildError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _check(argv: list[str], *, timeout: float = 900, cwd: Path | None = None, stdin: int | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=stdin)
    if proc.returncode != 0:
        output = proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]
        raise ImageBuildError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output}")


def build_debian_base(tag: str = DEBIAN_IMAGE, attempts: int = 3) -> None:
    if image_exists(tag):
        return
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed (apt-get install debootstrap)")
    last = ""
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="debootstrap-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
                capture_output=True, text=True, timeout=600,
            )
            if proc.returncode == 0:
                tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
                try:
                    _check(["docker", "import", "-c", 'CMD ["/bin/bash"]', "-", tag], stdin=tar.stdout)
                finally:
                    assert tar.stdout is not None
                    tar.stdout.close()
                    tar.wait()
                log(f"{tag} imported ({time.monotonic() - started:.0f}s)")
                return
            last = (proc.stdout + proc.stderr)[-2000:]
            log(f"debootstrap attempt {attempt}/{attempts} failed, retrying")
    raise ImageBuildError(f"debootstrap failed {attempts} times:\n{last}")


def docker_build(tag: str, dockerfile: Path, *, context: Path, build_args: dict[str, str] | None = None) -> None:
    started = time.monotonic()
    argv = ["docker", "build", "-q", "-t", tag, "-f", str(dockerfile)]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    _check([*argv, str(context)])
    log(f"{tag} built ({time.monotonic() - started:.0f}s)")


def _wheels_stamp() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "constraints.txt", *LOCKS):
        digest.update(path.read_bytes())
    digest.update(" ".join(SINK_REQUIREMENTS).encode())
    return digest.hexdigest()


def prepare_wheels(dest: Path = WHEELS_DIR) -> Path:
    """Download every wheel the images install into `dest` (host pip: https and /opt/wheels work here)."""
    stamp_file = dest / ".stamp"
    stamp = _wheels_stamp()
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    locks = [arg for lock in LOCKS for arg in ("-r", str(lock))]
    _check([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--require-hashes", "--no-deps",
            "-d", str(dest), *locks], cwd=ROOT, timeout=1200)
    _check([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest),
            "-c", str(ROOT / "constraints.txt"), *SINK_REQUIREMENTS], cwd=ROOT, timeout=1200)
    stamp_file.write_text(stamp)
    log(f"wheels ready in {dest} ({time.monotonic() - started:.0f}s)")
    return dest


def build_base_images() -> None:
    build_debian_base()
    if not image_exists(PYTHON_IMAGE):
        docker_build(PYTHON_IMAGE, IMAGES_DIR / "python/Dockerfile", context=IMAGES_DIR / "python")


def build_standin_images() -> dict[str, str]:
    """Images that replace the upstream Prometheus/Alertmanager/node-exporter/Mailpit/HAProxy images offline."""
    build_base_images()
    if not image_exists(STANDIN_IMAGES["talker-lb"]):
        docker_build(STANDIN_IMAGES["talker-lb"], IMAGES_DIR / "talker-lb/Dockerfile", context=IMAGES_DIR / "talker-lb")
    if not image_exists(MONITORING_IMAGE):
        docker_build(MONITORING_IMAGE, IMAGES_DIR / "monitoring/Dockerfile", context=IMAGES_DIR / "monitoring")
    for name in ("prometheus", "alertmanager", "node-exporter"):
        if not image_exists(STANDIN_IMAGES[name]):
            docker_build(STANDIN_IMAGES[name], IMAGES_DIR / name / "Dockerfile", context=IMAGES_DIR / name)
    # The sink's code changes with the repo: always rebuild (cached layers make it a few seconds).
    prepare_wheels()
    docker_build(STANDIN_IMAGES["mailpit"], IMAGES_DIR / "mailpit/Dockerfile", context=ROOT,
                 build_args={"BASE_IMAGE": PYTHON_IMAGE})
    return dict(STANDIN_IMAGES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels-only", action="store_true", help="only fill .cache/wheels")
    args = parser.parse_args()
    try:
        prepare_wheels()
        if not args.wheels_only:
            build_standin_images()
    except ImageBuildError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
