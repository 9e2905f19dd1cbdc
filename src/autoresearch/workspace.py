"""A research workspace: a git repository holding one line of research, and its config.

`init_workspace` creates one from a template; `Workspace.find` opens the one that holds a
folder. The config (autoresearch.toml, autoresearch.config) is written by `init`, committed,
and pinned outside the workspace (autoresearch.pins): every command reads the pinned copy,
never the working tree's file, which the agent can edit. A person changes a setting by
editing the file and `accept_settings` (`autoresearch settings --accept`): it checks the
file, commits it and pins it again. The engine's private state lives in the ignored folder
`.autoresearch/` (autoresearch.state).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import shutil
import time
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Callable

from autoresearch import capsliterals, gitrepo, pins, profiles
from autoresearch.config import CONFIG_NAME, Config
from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write, real_folder
from autoresearch.state import LOCK, STATE_DIR, StateFolder
from autoresearch.store import Store
GITIGNORE = """\
# written by the engine, never committed
results.tsv
run.log
progress.png
report.md
finalize.md
.autoresearch/
__pycache__/
*.pyc
"""
TEMPLATES = ("llm", "blank")
DEFAULT_FOLDER = "research"  # the workspace `autoresearch run` makes outside one


def fingerprint(root: Path, files) -> str:
    """sha256 over the harness files' names and bytes (one file: the sha256 of that file)."""
    files = list(files)
    if not files:
        return ""
    if len(files) == 1:
        path = root / files[0]
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
    h = hashlib.sha256()
    for name in sorted(files):
        path = root / name
        h.update(name.encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"<missing>")
    return h.hexdigest()


class Folder:
    """Where a workspace's files are, from its root (a Workspace, or a folder the views look at)."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name or str(self.root)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def state(self) -> StateFolder:
        return StateFolder(self.root)

    @property
    def log_path(self) -> Path:
        return self.root / "run.log"

    def worker_log_path(self, worker: str) -> Path:
        """The run.log of one worker of `run --workers N`: .autoresearch/workers/<worker>.log."""
        return self.state_dir / "workers" / f"{worker}.log"

    def worker_log(self, worker: str) -> Path:
        """worker_log_path, its folders made (real folders: a link in their place goes)."""
        real_folder(real_folder(self.state_dir) / "workers")
        return self.worker_log_path(worker)


@dataclass(frozen=True)
class Workspace(Folder):
    root: Path
    config: Config

    @property
    def config_path(self) -> Path:
        """The working tree's autoresearch.toml: a record for people, never read for the settings."""
        return self.root / CONFIG_NAME

    @property
    def settings_text(self) -> str:
        """The pinned text of autoresearch.toml, which `config` was read from."""
        return pinned_settings(self.root)

    @property
    def results_path(self) -> Path:
        return self.root / "results.tsv"

    @property
    def store(self) -> Store:
        """The engine's records (its rows, journals, the code that already ran), with results.tsv as their copy."""
        return Store(self.state.private, self.results_path, self.config.metric)

    @property
    def pins(self) -> pins.Pins:
        """The harness and validation pins from the engine's database; pins that were lost (the
        engine's folder wiped) are made again from the committed harness fingerprint, and the
        validation split is pinned again by the next `prepare`."""
        found = pins.read(self.root)
        if found is None:
            found = pins.write(pins.fresh(self.root, self.config.harness_sha256))
        return found

    def harness_ok(self) -> bool:
        """Whether the harness files match the pinned fingerprint (and the config agrees)."""
        pinned = self.pins.harness_sha256
        return fingerprint(self.root, self.config.harness_files) == pinned and self.config.harness_sha256 == pinned

    def save(self, config: Config) -> "Workspace":
        """Write a new config (atomically, into the tree and the pinned copy) and return the
        workspace with it. The tree's file is left for the caller to commit."""
        config.check()
        text = config.to_toml()
        atomic_write(self.config_path, text)
        pins.write_settings(self.root, text)
        return replace(self, config=config)

    @classmethod
    def load(cls, root: str | Path) -> "Workspace":
        """The workspace at `root`, with its pinned settings."""
        root = Path(root).resolve()
        if not is_workspace(root):
            raise AutoresearchError(f"{root} is not an autoresearch workspace (no {CONFIG_NAME}); run `autoresearch init`")
        return cls(root, Config.from_toml(pinned_settings(root)))

    @classmethod
    def find(cls, start: str | Path = ".") -> "Workspace":
        """The workspace holding `start` (searching upward), else the `./research` that
        `autoresearch run` makes in a folder that is not a workspace."""
        here = Path(start).resolve()
        for folder in (here, *here.parents):
            if is_workspace(folder):
                return cls.load(folder)
        if is_workspace(here / DEFAULT_FOLDER):
            return cls.load(here / DEFAULT_FOLDER)
        raise AutoresearchError(f"{here} is not inside an autoresearch workspace; run `autoresearch init` first")


def is_workspace(folder: Path) -> bool:
    """A folder with an autoresearch.toml, or a git repository whose settings are pinned (the
    agent deleting the file does not hide the workspace from the engine)."""
    folder = Path(folder)
    return (folder / CONFIG_NAME).is_file() or (gitrepo.is_repo(folder) and pins.has_settings(folder))


def pinned_settings(root: Path) -> str:
    """The pinned text of the workspace's autoresearch.toml. A workspace made before settings
    were pinned is pinned now from its committed file (HEAD's, not the working tree's)."""
    text = pins.read_settings(root)
    if text is not None:
        return text
    committed = gitrepo.show(root, "HEAD", CONFIG_NAME) if gitrepo.is_repo(root) else None
    if committed is None:
        raise AutoresearchError(f"{root}: no committed {CONFIG_NAME} to take the settings from; commit it first")
    try:
        Config.from_toml(committed)  # refused here when it cannot hold, before it is pinned
    except AutoresearchError as exc:
        raise AutoresearchError(f"the committed {CONFIG_NAME} cannot become the pinned settings ({exc}); "
                                f"fix it and commit it") from exc
    return pins.write_settings(root, committed)


def settings_changes(old: Config, new: Config) -> list[str]:
    """The names of the settings that differ (the keep rule's as keep.NAME)."""
    names = [f.name for f in fields(Config) if f.name != "keep" and getattr(old, f.name) != getattr(new, f.name)]
    return names + [f"keep.{f.name}" for f in fields(old.keep) if getattr(old.keep, f.name) != getattr(new.keep, f.name)]


def settings_diff(ws: Workspace) -> list[str]:
    """How the working tree's autoresearch.toml differs from the pinned settings (a unified
    diff; empty when it does not)."""
    try:
        tree = ws.config_path.read_text() if not ws.config_path.is_symlink() else "(a link)\n"
    except (OSError, UnicodeDecodeError):
        tree = "(missing or unreadable)\n"
    return list(difflib.unified_diff(ws.settings_text.splitlines(), tree.splitlines(), "pinned", "working tree",
                                     lineterm=""))


def accept_settings(ws: Workspace) -> tuple[Workspace, str]:
    """Make the working tree's autoresearch.toml the workspace's settings: it must parse, keep
    the pinned harness and name no fixed file as editable; it is committed on the current branch
    (that file alone) and pinned. Returns the workspace with them and a line saying what changed.
    The caller holds the workspace lock. Either everything happens or nothing does."""
    path = ws.config_path
    if path.is_symlink() or not path.is_file():
        raise AutoresearchError(f"{CONFIG_NAME} in the working tree is missing or not a regular file")
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AutoresearchError(f"{CONFIG_NAME} cannot be read as UTF-8 text ({exc})") from exc
    new = Config.from_toml(text)
    old = ws.config
    pinned = ws.pins.harness_sha256
    if new.harness_sha256 != pinned or new.harness_files != old.harness_files:
        raise AutoresearchError(f"{CONFIG_NAME}: [harness] must keep the pinned files and fingerprint "
                                f"({', '.join(old.harness_files) or 'none'}, {pinned[:12] or 'none'}); the harness "
                                f"cannot change within a workspace")
    changed = settings_changes(old, new)
    committed = gitrepo.show(ws.root, "HEAD", CONFIG_NAME)
    if text == ws.settings_text and committed == text:
        return ws, "nothing to accept: the working tree's autoresearch.toml is the pinned settings"
    what = ", ".join(changed) or "comments and layout"
    sha = None
    if committed != text:  # a commit of that file alone; the rest of the tree stays as it is
        sha = gitrepo.commit_off_branch(ws.root, gitrepo.head(ws.root), f"autoresearch settings: {what}",
                                        files={CONFIG_NAME: text})
    before = ws.settings_text
    pins.write_settings(ws.root, text)
    try:
        if sha is not None:
            gitrepo.move_branch(ws.root, sha, keep_tree=True)
    except BaseException:
        pins.write_settings(ws.root, before)
        raise
    where = f" and committed as {sha[:7]}" if sha else ""
    return replace(ws, config=new), f"accepted {CONFIG_NAME} ({what}): pinned{where}"


def template_text(template: str, name: str) -> str:
    return resources.files("autoresearch").joinpath("templates", template, name).read_text()


def render_llm(profile: profiles.Profile, dataset: str, budget: float | None) -> dict[str, str]:
    harness = dict(profile.harness, DATASET=dataset)
    if budget is not None:
        harness["TIME_BUDGET"] = budget if budget != int(budget) else int(budget)
    train = dict(profile.train)
    if profile.name == "cpu":
        train["CPU_THREADS"] = profiles.cpu_threads()
    memory = profiles.gpu_memory_gb() if profile.name.startswith("cuda") else None
    if memory is not None:  # this machine's card: the device batch that fits it
        train["DEVICE_BATCH_SIZE"] = profiles.cuda_device_batch(memory)
    return {
        "prepare.py": capsliterals.write_constants(template_text("llm", "prepare.py"), harness),
        "train.py": capsliterals.write_constants(template_text("llm", "train.py"), train),
        "program.md": template_text("llm", "program.md"),
    }


def render_blank(command: str, metric: str, direction: str, editable: tuple[str, ...]) -> str:
    """The blank template's program.md with this workspace's command, metric and files."""
    text = template_text("blank", "program.md")
    for key, value in (("command", command), ("metric", metric), ("direction", direction),
                       ("editable", ", ".join(f"`{e}`" for e in editable))):
        text = text.replace("{{" + key + "}}", value)
    return text


def init_workspace(
    directory: str | Path,
    *,
    profile: str = "auto",
    dataset: str | None = None,
    budget: float | None = None,
    template: str = "llm",
    command: str | None = None,
    metric: str | None = None,
    direction: str | None = None,
    editable: tuple[str, ...] = (),
    out: Callable[[str], None] | None = None,
) -> Workspace:
    """Create a workspace in `directory` (new or empty) and make the first commit on `main`.

    On any failure the folder is left as it was found: a new folder is removed, an empty
    one emptied again. The engine's records of an earlier workspace at the same path (deleted
    since) are moved aside first, and `out` is told where.
    """
    target = Path(directory).resolve()
    if (target / CONFIG_NAME).exists():
        raise AutoresearchError(f"{target} is already an autoresearch workspace")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AutoresearchError(f"{target} is not empty and is not an autoresearch workspace; choose a new or empty folder")
    if template not in TEMPLATES:
        raise AutoresearchError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise AutoresearchError("--budget must be a positive number of seconds")
    if direction is not None and direction not in ("lower", "higher"):
        raise AutoresearchError("--direction must be 'lower' or 'higher'")

    if template == "llm":
        files, config = _llm(profile, dataset, budget, command, metric, direction, editable)
    else:
        files, config = _blank(budget, command, metric, direction, editable)
    config.check()
    earlier = _retire(target)
    try:
        ws = _create(target, files, config)
    except BaseException:
        if earlier is not None:  # nothing half-made: the earlier records go back where they were
            private = pins.private_dir(target)
            shutil.rmtree(private, ignore_errors=True)
            os.replace(earlier, private)
        raise
    if earlier is not None and out is not None:
        out(f"the engine's records of an earlier workspace at {target} were moved to {earlier}")
    return ws


def _retire(target: Path) -> Path | None:
    """Move aside the private folder of an earlier workspace at `target` (deleted since): its
    ledger, pins and code already run name commits of another repository. Refused while an
    engine of it still runs (it holds the lock). Where it went; None when there was none."""
    state = StateFolder(target)
    if not state.private.is_dir() or not any(p.name != LOCK for p in state.private.iterdir()):
        return None
    kept = state.private.with_name(f"{state.private.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    with state.locked("autoresearch init"):
        os.replace(state.private, kept)
    return kept


def _llm(profile, dataset, budget, command, metric, direction, editable) -> tuple[dict[str, str], Config]:
    prof = profiles.get(profile)
    dataset = dataset or prof.dataset
    check_dataset_name(dataset)
    if dataset.startswith("files:"):  # the harness runs from the workspace: make the path absolute
        folder = Path(dataset[len("files:"):]).expanduser().resolve()
        check_documents(folder)
        dataset = f"files:{folder}"
    config = Config(
        template="llm", profile=prof.name, dataset=dataset, budget=float(budget if budget is not None else prof.budget),
        command=command or "python train.py", editable=tuple(editable) or ("train.py",),
        metric=metric or "val_bpb", direction=direction or "lower", harness_record=True, harness_files=("prepare.py",),
    )
    return render_llm(prof, dataset, budget), config


def _blank(budget, command, metric, direction, editable) -> tuple[dict[str, str], Config]:
    if not command:
        raise AutoresearchError("--template blank needs --command (the command that prints `NAME: value` lines)")
    if not metric:
        raise AutoresearchError("--template blank needs --metric (the NAME of the printed line to optimise)")
    if not editable:
        raise AutoresearchError("--template blank needs at least one --editable file")
    config = Config(
        template="blank", profile="none", dataset="none", budget=float(budget or 60), command=command,
        editable=tuple(editable), metric=metric, direction=direction or "lower", harness_record=False, harness_files=(),
    )
    return {"program.md": render_blank(command, metric, config.direction, config.editable)}, config


def _create(target: Path, files: dict[str, str], config: Config) -> Workspace:
    """Write the files, fingerprint the harness, make the first commit; on failure leave the folder as found."""
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        for name, text in files.items():
            (target / name).write_text(text)
        for name in config.editable:
            path = target / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")
        (target / ".gitignore").write_text(GITIGNORE)
        config = replace(config, harness_sha256=fingerprint(target, config.harness_files))
        (target / CONFIG_NAME).write_text(config.to_toml())
        gitrepo.init(target, f"autoresearch init ({config.template}, {config.profile})")
        pins.write(pins.fresh(target, config.harness_sha256))
        pins.write_settings(target, config.to_toml())
    except BaseException:
        pins.forget(target)
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        raise
    return Workspace(target, config)


DATASETS = ("climbmix", "tinystories", "pysource")
DOCUMENTS = (".txt", ".md", ".jsonl", ".parquet")  # what the harness reads from a files:PATH folder


def check_dataset_name(name: str) -> None:
    if name in DATASETS or (name.startswith("files:") and len(name) > len("files:")):
        return
    raise AutoresearchError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)} or files:PATH")


def check_documents(folder: Path) -> None:
    """A files:PATH folder must exist and hold documents the harness reads, before init makes anything."""
    if not folder.is_dir():
        raise AutoresearchError(f"files:{folder}: no such folder")
    if not any(p.suffix in DOCUMENTS and p.is_file() for p in folder.rglob("*")):
        raise AutoresearchError(f"files:{folder} holds no documents ({', '.join(DOCUMENTS)})")
