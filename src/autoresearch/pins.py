"""The pins: the harness fingerprint and the validation split's sha256, kept outside the workspace.

Everything inside a workspace can be written by the agent (it edits files there) and the
committed config can be rewritten with git, so the two numbers that make scores comparable
are kept where neither the agent's edits nor a training run reach: one small JSON file per
workspace in the engine's own folder (`$AUTORESEARCH_HOME/pins`, by default
`$XDG_STATE_HOME/autoresearch/pins`, i.e. `~/.local/state/autoresearch/pins`). A training run
never sees that folder (it is not bound into the sandbox).

The harness is pinned when `init` makes the workspace, the validation split when `prepare`
first makes it, and what the baseline needed (its time outside training, its evaluation) when
the engine has measured the first baseline. A workspace made before pins existed is pinned
from its config and state folder the first time the engine opens it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from autoresearch.files import atomic_write

VERSION = 1


@dataclass(frozen=True)
class Pins:
    root: str  # the workspace's resolved path
    harness_sha256: str = ""
    val_sha256: str = ""
    version: int = VERSION
    # what the first baseline needed, pinned once it is measured (None: not yet; files written
    # before these existed load with None): the most any of its runs spent outside training,
    # from which every run's deadline follows, and its slowest evaluation, from which the
    # evaluator's limit does (engine/measure.py, Limits.of)
    baseline_startup: float | None = None
    baseline_eval: float | None = None

    def with_val(self, sha256: str) -> "Pins":
        return replace(self, val_sha256=sha256)

    def with_baseline(self, startup: float, evaluation: float | None) -> "Pins":
        return replace(self, baseline_startup=startup, baseline_eval=evaluation)


def home() -> Path:
    """The engine's own folder, outside every workspace."""
    if os.environ.get("AUTORESEARCH_HOME"):
        return Path(os.environ["AUTORESEARCH_HOME"]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "autoresearch"


def _key(root: Path) -> str:
    return hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:20]


def path_for(root: Path) -> Path:
    return home() / "pins" / f"{_key(root)}.json"


def private_dir(root: Path) -> Path:
    """The engine's private state folder of the workspace at `root` (see autoresearch.state)."""
    return home() / "workspaces" / _key(root)


def read(root: Path) -> Pins | None:
    try:
        data = json.loads(path_for(root).read_text())
        pins = Pins(**data)
    except (OSError, ValueError, TypeError):
        return None
    if pins.version != VERSION or pins.root != str(Path(root).resolve()):
        return None
    return pins


def write(pins: Pins) -> Pins:
    path = path_for(Path(pins.root))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(asdict(pins), indent=1) + "\n")
    return pins


def fresh(root: Path, harness_sha256: str, val_sha256: str = "") -> Pins:
    return Pins(str(Path(root).resolve()), harness_sha256, val_sha256)


SETTINGS_VERSION = 1


def settings_path(root: Path) -> Path:
    """Where the pinned settings (autoresearch.toml's text) of the workspace at `root` live."""
    return home() / "pins" / f"{_key(root)}.settings.json"


def read_settings(root: Path) -> str | None:
    """The pinned text of the workspace's autoresearch.toml; None when absent, of another
    workspace or version, or damaged (its text no longer matches its sha256)."""
    try:
        data = json.loads(settings_path(root).read_text())
        text, digest = data["text"], data["sha256"]
        ok = (data.get("version") == SETTINGS_VERSION and data.get("root") == str(Path(root).resolve())
              and isinstance(text, str) and hashlib.sha256(text.encode()).hexdigest() == digest)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return text if ok else None


def write_settings(root: Path, text: str) -> str:
    path = settings_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"root": str(Path(root).resolve()), "sha256": hashlib.sha256(text.encode()).hexdigest(),
              "version": SETTINGS_VERSION, "text": text}
    atomic_write(path, json.dumps(record, indent=1) + "\n")
    return text
