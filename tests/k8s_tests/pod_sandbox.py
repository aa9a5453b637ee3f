"""Run a process the way the kubelet would run one container of a rendered pod spec, without a cluster.

Root only (a private mount namespace): CI runs as root. Importable as k8s.pod_sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


_SKIP_REMOUNT = ("/proc", "/sys", "/dev")


def _hidden_ancestor(path: Path) -> Path | None:
    """The first ancestor of path that other users cannot traverse (root's 0700 home, a mktemp dir)."""
    for ancestor in reversed(path.parents):
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _under(path: Path, parent: str) -> bool:
    return path == Path(parent) or Path(parent) in path.parents


def sandbox_argv(
    pod: Obj,
    container: Obj,
    secret_dirs: dict[str, Path],
    argv: list[str],
    env: dict[str, str],
    reachable: list[Path] = (),  # type: ignore[assignment]
) -> list[str]:
    """argv that runs `argv` the way the kubelet would run this container, as far as a process can be:

    - every mount read-only (readOnlyRootFilesystem), a fresh tmpfs for each emptyDir volume mount;
    - each secret volume mount bind-mounted read-only from `secret_dirs[volume name]` under a private /run;
    - uid/gid from the pod securityContext, fsGroup as supplementary group, no capabilities at all
      (capabilities.drop: [ALL]) and no_new_privs (allowPrivilegeEscalation: false);
    - exactly `env` as the environment;
    - `reachable` paths (the interpreter, the checkout: world-readable /opt/venv and /app in the image) bound
      back read-only where an emptyDir covers them (a checkout under /tmp) or a 0700 directory hides them
      (root's home holding pyenv).
    """
    psc = pod["securityContext"]
    csc = container["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["capabilities"]["drop"] == ["ALL"]
    assert csc["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    writable = [m["mountPath"] for m in mounts if "emptyDir" in volumes[m["name"]]]
    paths = sorted({p.resolve() for p in reachable})
    paths = [p for p in paths if not any(q != p and q in p.parents for q in paths)]

    lines = ["set -eu", "mount -t tmpfs -o size=16m,mode=755 tmpfs /run"]
    # 1. Keep a handle on everything that later mounts may cover: the reachable paths and the secrets' sources.
    for n, path in enumerate(paths):
        lines += [f"mkdir -p /run/.keep/{n}", f"mount --bind {path} /run/.keep/{n}"]
    for mount in mounts:
        volume, target = volumes[mount["name"]], mount["mountPath"]
        if "secret" in volume:
            assert target.startswith("/run/"), target
            lines += [f"mkdir -p {target}", f"mount --bind {secret_dirs[mount['name']]} {target}"]
        elif "emptyDir" not in volume:
            raise AssertionError(f"no sandbox for volume {volume}")
    # 2. emptyDir volumes: fresh, writable, empty.
    for mount in mounts:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit", "64Mi").replace("Gi", "g").replace("Mi", "m")
            lines.append(f"mount -t tmpfs -o size={size},mode=1777 tmpfs {mount['mountPath']}")
    # 3. Reachable paths back in place, through 0755 directories.
    rebound: list[tuple[int, Path]] = []
    covered: set[Path] = set()
    for n, path in enumerate(paths):
        if any(_under(path, w) for w in writable):
            rebound.append((n, path))
            continue
        hidden = _hidden_ancestor(path)
        if hidden is not None:
            if hidden not in covered:
                lines.append(f"mount -t tmpfs -o size=1m,mode=755 tmpfs {hidden}")
                covered.add(hidden)
            rebound.append((n, path))
    for n, path in rebound:
        lines += [f"mkdir -p {path}", f"mount --bind /run/.keep/{n} {path}"]
    # 4. Everything read-only except the emptyDir volumes (the rebound paths too, even inside an emptyDir).
    keep = " ".join((*_SKIP_REMOUNT, *writable))
    lines += [
        "for m in $(awk '{print $2}' /proc/self/mounts | sort -u); do",
        f"  skip=; for k in {keep}; do case $m in $k|$k/*) skip=1;; esac; done",
        '  [ -n "$skip" ] || mount -o remount,bind,ro "$m" 2>/dev/null || true',
        "done",
        *(f"mount -o remount,bind,ro {path}" for _, path in rebound),
        # Prove the root really is read-only before handing over (root itself cannot write now).
        'if touch /.k8s-rw-probe 2>/dev/null || touch "$PWD/.k8s-rw-probe" 2>/dev/null; then',
        '  echo "sandbox: filesystem still writable" >&2; exit 97',
        "fi",
        f"exec setpriv --reuid {psc['runAsUser']} --regid {psc['runAsGroup']} --groups {psc['fsGroup']}"
        ' --no-new-privs --inh-caps=-all --bounding-set=-all -- env -i "$@"',
    ]
    return [
        "unshare", "--mount", "--propagation", "private", "bash", "-c", "\n".join(lines), "sandbox",
        *(f"{k}={v}" for k, v in env.items()), *argv,
    ]


def write_secret(directory: Path, files: dict[str, str], fs_group: int) -> Path:
    """A secret volume's content as the kubelet writes it: defaultMode 0440, group fsGroup."""
    directory.mkdir(parents=True)
    for name, content in files.items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        os.chown(path, 0, fs_group)
        path.chmod(0o440)
    directory.chmod(0o755)
    return directory


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}
