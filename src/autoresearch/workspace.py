"""A research workspace: a git repository holding one line of research, and its config.

`init_workspace` creates one from a template; `Workspace.find` opens the one that holds a
folder. The config (autoresearch.toml) is written once by `init` and read by the engine;
the engine's private state lives in the ignored folder `.autoresearch/`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from autoresearch import constants, profiles
from autoresearch.errors import AutoresearchError
from autoresearch.proc import run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "autoresearch.toml"
STATE_DIR = ".autoresearch"
GITIGNORE = """\
# written by the engine, never committed
results.tsv
run.log
progress.png
report.md
.autoresearch/
__pycache__/
*.pyc
"""
TEMPLATES = ("llm", "blank")


@dataclass(frozen=True)
class KeepRule:
    """Settings of the noise-aware keep rule (see the engine)."""

    baseline_runs: int = 2
    z: float = 2.0
    min_delta: float = 0.001
    confirm: bool = True
    confirm_all: bool = True  # confirm every win, large ones too (a wall-clock budget drifts with the machine)


@dataclass(frozen=True)
class Config:
    template: str = "llm"
    profile: str = "cpu"
    dataset: str = "pysource"
    budget: float = 60.0
    command: str = "python train.py"
    editable: tuple[str, ...] = ("train.py",)
    notes: str = "notes.md"
    hard_limit: float = 0.0  # 0: 2 x budget + allowance
    metric: str = "val_bpb"
    direction: str = "lower"
    harness_record: bool = True  # the run writes a JSON record to $AUTORESEARCH_RESULT
    harness_files: tuple[str, ...] = ("prepare.py",)
    harness_sha256: str = ""
    val_sha256: str = ""  # pinned by the first `prepare`
    keep: KeepRule = field(default_factory=KeepRule)

    def to_toml(self) -> str:
        def q(s: str) -> str:
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

        def arr(items) -> str:
            return "[" + ", ".join(q(i) for i in items) + "]"

        return (
            "# An autoresearch workspace. Written by `autoresearch init`; read by the engine.\n"
            "# Results compare only within one workspace: do not edit these by hand mid-research.\n"
            f"template = {q(self.template)}\n"
            f"profile = {q(self.profile)}\n"
            f"dataset = {q(self.dataset)}\n"
            f"budget = {self.budget:g}              # seconds of training per experiment\n"
            f"command = {q(self.command)}\n"
            f"editable = {arr(self.editable)}   # the only files an experiment may change\n"
            f"notes = {q(self.notes)}          # the agent's notebook; may change, never scored\n"
            f"hard_limit = {self.hard_limit:g}            # seconds; 0 means 2 x budget + allowance\n"
            "\n[metric]\n"
            f"name = {q(self.metric)}\n"
            f"direction = {q(self.direction)}     # lower or higher is better\n"
            f"harness_record = {str(self.harness_record).lower()}\n"
            "\n[harness]\n"
            f"files = {arr(self.harness_files)}\n"
            f"sha256 = {q(self.harness_sha256)}\n"
            f"val_sha256 = {q(self.val_sha256)}\n"
            "\n[keep]\n"
            f"baseline_runs = {self.keep.baseline_runs}   # runs of the unchanged baseline, to estimate noise\n"
            f"z = {self.keep.z:g}               # a win must exceed max(min_delta, z * sigma)\n"
            f"min_delta = {self.keep.min_delta:g}\n"
            f"confirm = {str(self.keep.confirm).lower()}        # re-run a small win once before keeping it\n"
            f"confirm_all = {str(self.keep.confirm_all).lower()}    # ... and every other win, beside a re-run of the frontier\n"
        )

    @classmethod
    def from_toml(cls, text: str) -> "Config":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AutoresearchError(f"{CONFIG_NAME} is not valid TOML: {exc}") from exc
        metric, harness, keep = data.get("metric", {}), data.get("harness", {}), data.get("keep", {})
        try:
            cfg = cls(
                template=str(data.get("template", "llm")),
                profile=str(data.get("profile", "cpu")),
                dataset=str(data.get("dataset", "")),
                budget=float(data.get("budget", 60)),
                command=str(data.get("command", "python train.py")),
                editable=tuple(str(x) for x in data.get("editable", ["train.py"])),
                notes=str(data.get("notes", "notes.md")),
                hard_limit=float(data.get("hard_limit", 0)),
                metric=str(metric.get("name", "val_bpb")),
                direction=str(metric.get("direction", "lower")),
                harness_record=bool(metric.get("harness_record", True)),
                harness_files=tuple(str(x) for x in harness.get("files", [])),
                harness_sha256=str(harness.get("sha256", "")),
                val_sha256=str(harness.get("val_sha256", "")),
                keep=KeepRule(
                    baseline_runs=int(keep.get("baseline_runs", 2)),
                    z=float(keep.get("z", 2.0)),
                    min_delta=float(keep.get("min_delta", 0.001)),
                    confirm=bool(keep.get("confirm", True)),
                    confirm_all=bool(keep.get("confirm_all", True)),
                ),
            )
        except (TypeError, ValueError) as exc:
            raise AutoresearchError(f"{CONFIG_NAME}: {exc}") from exc
        if cfg.direction not in ("lower", "higher"):
            raise AutoresearchError(f"{CONFIG_NAME}: metric direction must be 'lower' or 'higher', not {cfg.direction!r}")
        return cfg


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


@dataclass(frozen=True)
class Workspace:
    root: Path
    config: Config

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def results_path(self) -> Path:
        return self.root / "results.tsv"

    @property
    def log_path(self) -> Path:
        return self.root / "run.log"

    def harness_ok(self) -> bool:
        return fingerprint(self.root, self.config.harness_files) == self.config.harness_sha256

    def save(self, config: Config) -> "Workspace":
        """Write a new config atomically and return the workspace with it."""
        atomic_write(self.config_path, config.to_toml())
        return replace(self, config=config)

    @classmethod
    def load(cls, root: str | Path) -> "Workspace":
        root = Path(root).resolve()
        path = root / CONFIG_NAME
        if not path.is_file():
            raise AutoresearchError(f"{root} is not an autoresearch workspace (no {CONFIG_NAME}); run `autoresearch init`")
        return cls(root, Config.from_toml(path.read_text()))

    @classmethod
    def find(cls, start: str | Path = ".") -> "Workspace":
        """The workspace holding `start` (searching upward)."""
        here = Path(start).resolve()
        for folder in (here, *here.parents):
            if (folder / CONFIG_NAME).is_file():
                return cls.load(folder)
        raise AutoresearchError(f"{here} is not inside an autoresearch workspace; run `autoresearch init` first")


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new file, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_tail(path: Path, limit: int) -> str | None:
    """The last `limit` bytes of a file as text, a cut first line dropped; None when unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    return text.split("\n", 1)[-1] if size > limit else text


def template_text(template: str, name: str) -> str:
    return resources.files("autoresearch").joinpath("templates", template, name).read_text()


def git_identity_args(root: Path) -> list[str]:
    """`-c user.name=… -c user.email=…` when git has no identity configured, so commits never fail."""
    args = []
    for key, default in (("user.name", "autoresearch"), ("user.email", "autoresearch@localhost")):
        if run(["git", "config", key], cwd=root, check=False).returncode != 0:
            args += ["-c", f"{key}={default}"]
    return args


def render_llm(profile: profiles.Profile, dataset: str, budget: float | None) -> dict[str, str]:
    harness = dict(profile.harness, DATASET=dataset)
    if budget is not None:
        harness["TIME_BUDGET"] = budget if budget != int(budget) else int(budget)
    return {
        "prepare.py": constants.write_constants(template_text("llm", "prepare.py"), harness),
        "train.py": constants.write_constants(template_text("llm", "train.py"), profile.train),
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
) -> Workspace:
    """Create a workspace in `directory` (new or empty) and make the first commit on `main`.

    On any failure the folder is left as it was found: a new folder is removed, an empty
    one emptied again.
    """
    target = Path(directory).resolve()
    if (target / CONFIG_NAME).exists():
        raise AutoresearchError(f"{target} is already an autoresearch workspace")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AutoresearchError(f"{target} is not empty and is not an autoresearch workspace; choose a new or empty folder")
    if template not in TEMPLATES:
        raise AutoresearchError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")
    if budget is not None and budget <= 0:
        raise AutoresearchError("--budget must be a positive number of seconds")
    if direction is not None and direction not in ("lower", "higher"):
        raise AutoresearchError("--direction must be 'lower' or 'higher'")

    if template == "llm":
        prof = profiles.get(profile)
        dataset = dataset or prof.dataset
        check_dataset_name(dataset)
        if dataset.startswith("files:"):  # the harness runs from the workspace: make the path absolute
            dataset = "files:" + str(Path(dataset[len("files:"):]).expanduser().resolve())
        files = render_llm(prof, dataset, budget)
        config = Config(
            template="llm", profile=prof.name, dataset=dataset,
            budget=float(budget if budget is not None else prof.budget),
            command=command or "python train.py",
            editable=tuple(editable) or ("train.py",),
            metric=metric or "val_bpb", direction=direction or "lower",
            harness_record=True, harness_files=("prepare.py",),
        )
    else:
        if not command:
            raise AutoresearchError("--template blank needs --command (the command that prints `NAME: value` lines)")
        if not metric:
            raise AutoresearchError("--template blank needs --metric (the NAME of the printed line to optimise)")
        if not editable:
            raise AutoresearchError("--template blank needs at least one --editable file")
        files = {"program.md": render_blank(command, metric, direction or "lower", tuple(editable))}
        config = Config(
            template="blank", profile="none", dataset="none", budget=float(budget or 60),
            command=command, editable=tuple(editable), metric=metric,
            direction=direction or "lower", harness_record=False, harness_files=(),
        )

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
        run(["git", "init", "-q", "-b", "main"], cwd=target)
        run(["git", "add", "-A"], cwd=target)
        run(["git", *git_identity_args(target), "commit", "-q", "-m", f"autoresearch init ({config.template}, {config.profile})"], cwd=target)
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        raise
    return Workspace(target, config)


DATASETS = ("climbmix", "tinystories", "pysource")


def check_dataset_name(name: str) -> None:
    if name in DATASETS or (name.startswith("files:") and len(name) > len("files:")):
        return
    raise AutoresearchError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)} or files:PATH")
