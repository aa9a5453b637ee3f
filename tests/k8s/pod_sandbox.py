"""Run a process the way the kubelet would run one container of a rendered pod spec, without a cluster.

Root only (a private mount namespace): CI runs as root. Importable as k8s.pod_sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


_SKIP_REMOUNT = ("/proc", "/sys", "/dev")


def _hidden_behind(path: Path) -> tuple[Path, str] | None:
    """(first ancestor others cannot traverse, its child on the way to path), or None when path is reachable."""
    for ancestor in reversed(path.parents):
        if ancestor != path and not os.stat(ancestor).st_mode & 0o001:
            return ancestor, path.relative_to(ancestor).parts[0]
    return None


def _reachable_lines(paths: list[Path]) -> list[str]:
    """Make paths under a 0700 directory (a root-owned pyenv or checkout) reachable for the pod's uid, as the
    image's /opt/venv is: a 0755 tmpfs over that directory with only the needed children bound back in."""
    hidden: dict[Path, set[str]] = {}
    for path in paths:
        found = _hidden_behind(path.resolve())
        if found:
            hidden.setdefault(found[0], set()).add(found[1])
    lines: list[str] = []
    for n, (ancestor, children) in enumerate(sorted(hidden.items())):
        stash = f"/run/.reachable{n}"
        lines += [f"mkdir -p {stash}", f"mount --bind {ancestor} {stash}",
                  f"mount -t tmpfs -o size=1m,mode=755 tmpfs {ancestor}"]
        for child in sorted(children):
            lines += [f"mkdir -p {ancestor / child}", f"mount --bind {stash}/{child} {ancestor / child}"]
        lines.append(f"umount -l {stash}")
    return lines


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
    - `reachable` paths (the interpreter, the checkout) readable although they may sit in root's 0700 home.
    """
    psc = pod["securityContext"]
    csc = container["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["capabilities"]["drop"] == ["ALL"]
    assert csc["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    lines = ["set -eu", "mount -t tmpfs -o size=16m,mode=755 tmpfs /run", *_reachable_lines(list(reachable))]
    writable: list[str] = []
    # Secrets first: their sources may live under /tmp, which an emptyDir mount then covers.
    mounts = sorted(container.get("volumeMounts", []), key=lambda m: "secret" not in volumes[m["name"]])
    for mount in mounts:
        volume, path = volumes[mount["name"]], mount["mountPath"]
        if "secret" in volume:
            assert path.startswith("/run/"), path
            lines += [f"mkdir -p {path}", f"mount --bind {secret_dirs[mount['name']]} {path}"]
        elif "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit", "64Mi").replace("Gi", "g").replace("Mi", "m")
            lines.append(f"mount -t tmpfs -o size={size},mode=1777 tmpfs {path}")
            writable.append(path)
        else:
            raise AssertionError(f"no sandbox for volume {volume}")
    keep = " ".join(f"{p}" for p in (*_SKIP_REMOUNT, *writable))
    lines += [
        "for m in $(awk '{print $2}' /proc/self/mounts | sort -u); do",
        f"  skip=; for k in {keep}; do case $m in $k|$k/*) skip=1;; esac; done",
        '  [ -n "$skip" ] || mount -o remount,bind,ro "$m" 2>/dev/null || true',
        "done",
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
