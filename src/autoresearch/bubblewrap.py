"""The bubblewrap command line of a jail (Linux): what `sandbox.Sandbox.wrap` puts before "--".

A fresh mount namespace holds only the system's programs and libraries (`SYSTEM_DIRS`,
`SYSTEM_FILES`), a /tmp of its own, the Python installation, the GPU devices and the jail's
binds, with the folders of `Jail.masked` and `Jail.hidden` shown empty; its own process, network, IPC and
hostname namespaces; a new session; killed with the engine. No value of the environment is
on the command line: bwrap is started with the run's environment and passes it on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.sandbox import Jail

# not /opt: a wheelhouse or a package mirror there holds copies of the test files that pysource
# validates on (a Python installation there is bound as one, by sandbox.python_dirs)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime",
    "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates",
    "/etc/os-release", "/etc/mime.types",
)
TMP_BYTES = 2 << 30  # the jail's /tmp is a tmpfs of this size


def arguments(jail: Jail, *, python: list[Path], gpus: tuple[str, ...], root: bool) -> list[str]:
    """bwrap's options for `jail` (the command follows them after "--"): `python` are the
    folders of the Python installation to show, `gpus` the GPU devices there are; `root`: the
    engine runs as root (no user namespace of its own then)."""
    args = _namespaces(root)
    made: set[str] = {"/"}
    ordered: list[tuple[str, ...]] = []

    def parents(target: Path) -> None:
        # bwrap makes missing parents with mode 0700, which a dropped uid could not enter
        for p in reversed(target.parents):
            if str(p) not in made:
                made.add(str(p))
                ordered.append(("--perms", "0755", "--dir", str(p)))

    for d in SYSTEM_DIRS:
        path = Path(d)
        if path.is_symlink():
            ordered.append(("--symlink", os.readlink(path), d))
            made.add(d)
        elif path.is_dir():
            ordered.append(("--ro-bind", d, d))
            made.add(d)
    for f in SYSTEM_FILES:
        if os.path.exists(f):
            parents(Path(f))
            ordered.append(("--ro-bind", f, f))
    # /tmp first: a bind below it (a Python installation under /tmp) must go on top of it
    ordered.append(("--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"))
    made.add("/tmp")
    for d in python:
        parents(d)
        ordered.append(("--ro-bind", str(d), str(d)))
        made.add(str(d))
    for m in _masked_targets((*jail.masked, *jail.hidden), made):  # the workspace under /usr is no less hidden
        ordered.append(("--perms", "0755", "--tmpfs", m))
        ordered.append(("--remount-ro", m))
    ordered.append(("--proc", "/proc"))
    ordered.append(("--dev", "/dev"))
    made.update({"/proc", "/dev"})
    if jail.gpus:
        for dev in gpus:
            ordered.append(("--dev-bind", dev, dev))
        if gpus and Path("/sys").is_dir():
            ordered.append(("--ro-bind", "/sys", "/sys"))
    for b in jail.binds:
        parents(b.target)
        ordered.append(("--bind" if b.writable else "--ro-bind", str(b.source), str(b.target)))
        made.add(str(b.target))
    for a in ordered:
        args += a
    for name in jail.outside_only:  # a name only: no value on the command line
        args += ["--unsetenv", name]
    args += ["--chdir", str(jail.cwd)]
    return args


def _namespaces(root: bool) -> list[str]:
    """The namespaces and the session of the jail. No --clearenv/--setenv: bwrap is started with
    the run's environment and passes it on, so no value appears on its command line."""
    args = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if not root:  # an unprivileged engine gets its namespaces through a user namespace
        args += ["--unshare-user", "--disable-userns"]
    return args


def _masked_targets(masked: tuple[Path, ...], made: set[str]) -> list[str]:
    """The masked folders that would be visible in the jail (inside a folder bound into it), each
    once, outer folders first (an inner one is hidden with its outer one). Hundreds of them for
    pysource: the ancestors are looked up in sets, not compared pairwise."""
    shown = {m for m in made if m not in ("/", "/tmp")}
    out: list[str] = []
    taken: set[str] = set()
    for m in sorted({os.path.realpath(p) for p in masked if os.path.isdir(p)}, key=lambda p: p.count("/")):
        parts = m.split("/")
        ancestors = {"/".join(parts[:i]) for i in range(2, len(parts) + 1)}  # m itself included
        if ancestors & taken or not ancestors & shown:
            continue
        out.append(m)
        taken.add(m)
    return out
