"""The Seatbelt profile of a jail (macOS), which `sandbox-exec` runs.

No network, no signals to or inspection of processes outside the sandbox, no reads of the
user's home, the workspace, the engine's folder or the prepared data except the Python
installation and the binds, and writes only to the writable binds. Seatbelt does not move
files, so there a bind's target is its source (`Sandbox.remaps` is False) and the run sees
the real paths. The run is not switched to another user and has no process namespace of its
own: it dies with its process group, which the engine kills. This profile is written from
the documented rules of the profile language and is not exercised by the test suite, which
runs on Linux; `detect()` starts one before trusting it, and a Mac where it fails to start
runs unsandboxed, and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.sandbox import Jail


def _sbpl(path: Path) -> str:
    """A path as an SBPL string: the real path (Seatbelt matches /private/tmp, not /tmp), quoted."""
    text = str(Path(path).resolve())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _filters(paths, folders: bool = False) -> str:
    """SBPL filters for `paths`: a folder and all below it, or the one file."""
    return " ".join(f"(subpath {_sbpl(p)})" if folders or Path(p).is_dir() else f"(literal {_sbpl(p)})"
                    for p in paths)


def profile(jail: Jail, python: list[Path]) -> str:
    """The Seatbelt profile of `jail`, `python` being the folders of the Python installation to
    show. The last matching rule wins, so the order says it: read anything, but not the homes,
    the hidden paths (the workspace, the engine's folder, the prepared data); yet the Python
    installation and the binds; write only the writable binds; no network at all."""
    homes = [Path("/Users"), Path.home(), *(Path(p) for p in ("/Volumes",) if Path(p).exists())]
    bound = [b.source for b in jail.binds if not b.writable]
    writable = [b.source for b in jail.binds if b.writable]
    rules = [
        "(version 1)",
        "(deny default)",
        "(allow process-exec process-fork)",
        "(allow signal (target same-sandbox))",
        "(allow process-info* (target same-sandbox))",
        "(allow sysctl-read)",
        "(allow mach-lookup)",  # system services, the GPU's (Metal) among them
        "(allow iokit-open)",
        "(allow ipc-posix-shm* ipc-posix-sem)",
        "(allow file-ioctl)",
        "(allow pseudo-tty)",
        "(allow file-read*)",
        f"(deny file-read* {_filters([*homes, *jail.hidden], folders=True)})",
        f"(allow file-read* {_filters(python)})" if python else "",
        # masked after the Python installation (they may lie inside it), before the binds (the
        # training files lie inside the masked data cache)
        f"(deny file-read* {_filters(jail.masked, folders=True)})" if jail.masked else "",
        f"(allow file-read* {_filters(bound)})" if bound else "",
        f"(allow file-read* file-write* {_filters(writable)})" if writable else "",
        '(allow file-write* (literal "/dev/null") (literal "/dev/tty") (regex #"^/dev/ttys[0-9]+$"))',
        "(deny network*)",
    ]
    return "\n".join(r for r in rules if r) + "\n"
