"""The pins: the harness fingerprint, the validation split's sha256, what the first baseline
needed, and the settings, kept outside the workspace.

Everything inside a workspace can be written by the agent (it edits files there) and the
committed config can be rewritten with git, so what makes scores comparable is kept where
neither the agent's edits nor a training run reach: in the engine's database of the workspace
(autoresearch.store, in its private folder under `$AUTORESEARCH_HOME`, by default
`$XDG_STATE_HOME/autoresearch`, i.e. `~/.local/state/autoresearch`). A training run never sees
that folder (it is not bound into the sandbox).

The harness and the settings are pinned when `init` makes the workspace, the validation split
when `prepare` first makes it, and what the baseline needed (its time outside training, its
evaluation) when the engine has measured the first baseline. Pins kept as files beside the
database by an older version (`pins/<key>.json`, `pins/<key>.settings.json`) are moved in the
first time they are read, and the files renamed with a `.v0` suffix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path


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


def private_dir(root: Path) -> Path:
    """The engine's private state folder of the workspace at `root` (see autoresearch.state)."""
    return home() / "workspaces" / _key(root)


def _store(root: Path):
    from autoresearch.store import Store  # the store knows nothing of pins; only this module reads them

    return Store(private_dir(root))


def _pinned(root: Path, key: str, old_suffix: str) -> str | None:
    """The pin `key` of the workspace; an older version's file moved in once."""
    store = _store(root)
    text = store.pinned(key)
    if text is not None:
        return text
    old = home() / "pins" / f"{_key(root)}{old_suffix}"
    try:
        text = old.read_text()
    except OSError:
        return None
    store.pin(key, text)
    with contextlib.suppress(FileNotFoundError):  # another process moved it meanwhile
        os.replace(old, old.with_name(old.name + ".v0"))
    return text


def where(root: Path) -> Path:
    """The database the pins of the workspace at `root` live in (for people)."""
    return _store(root).path


def read(root: Path) -> Pins | None:
    try:
        pins = Pins(**json.loads(_pinned(root, "pins", ".json") or "null"))
    except (ValueError, TypeError):
        return None
    if pins.version != VERSION or pins.root != str(Path(root).resolve()):
        return None
    return pins


def write(pins: Pins) -> Pins:
    _store(Path(pins.root)).pin("pins", json.dumps(asdict(pins), indent=1))
    return pins


def fresh(root: Path, harness_sha256: str, val_sha256: str = "") -> Pins:
    return Pins(str(Path(root).resolve()), harness_sha256, val_sha256)


def forget(root: Path) -> None:
    """Drop the workspace's pins (an `init` that did not finish)."""
    _store(root).unpin("pins", "settings")


SETTINGS_VERSION = 1


def has_settings(root: Path) -> bool:
    """Whether the workspace at `root` has pinned settings (without making a database)."""
    from autoresearch.store import DB_NAME

    return (private_dir(root) / DB_NAME).is_file() and read_settings(root) is not None \
        or (home() / "pins" / f"{_key(root)}.settings.json").is_file()


def read_settings(root: Path) -> str | None:
    """The pinned text of the workspace's autoresearch.toml; None when absent, of another
    workspace or version, or damaged (its text no longer matches its sha256)."""
    try:
        data = json.loads(_pinned(root, "settings", ".settings.json") or "null")
        text, digest = data["text"], data["sha256"]
        ok = (data.get("version") == SETTINGS_VERSION and data.get("root") == str(Path(root).resolve())
              and isinstance(text, str) and hashlib.sha256(text.encode()).hexdigest() == digest)
    except (ValueError, TypeError, KeyError):
        return None
    return text if ok else None


def write_settings(root: Path, text: str) -> str:
    record = {"root": str(Path(root).resolve()), "sha256": hashlib.sha256(text.encode()).hexdigest(),
              "version": SETTINGS_VERSION, "text": text}
    _store(root).pin("settings", json.dumps(record, indent=1))
    return text
