"""autoresearch.toml: the workspace's settings, modelled in full.

Each setting is a dataclass field; its default, its place in the file (a top-level key or a
key of the `[metric]`, `[harness]` or `[keep]` table) and the comment written beside it are
declared once, on the field. Reading takes every key it knows, converts it to the field's
type and refuses a key it does not know (a typo would otherwise be ignored silently);
writing goes through tomlkit, so the file keeps its comments.
"""

from __future__ import annotations

import posixpath
import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import tomlkit

from autoresearch.errors import AutoresearchError
from autoresearch.research import keeprule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "autoresearch.toml"
TABLES = ("metric", "harness", "keep")
HEADER = ("An autoresearch workspace. Written by `autoresearch init`; read by the engine.",
          "Results compare only within one workspace: do not edit these by hand mid-research.")


def setting(default: Any, comment: str = "", *, table: str = "", key: str = "") -> Any:
    """A dataclass field that knows where it lives in the TOML file and what to say beside it."""
    meta = {"table": table, "key": key, "comment": comment}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence settings")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class KeepRule:
    """Settings of the keep rule's sequential test (autoresearch.research.keeprule.Rule)."""

    baseline_runs: int = setting(2, "runs of the unchanged baseline, to estimate noise")
    p_keep: float = setting(0.96, "keep a change once P(better) reaches this, from its second run on")
    first_stop: float = setting(0.45, "after one run, discard at or below this P(better)")
    stop: float = setting(0.55, "from the second run on, discard at or below this P(better)")
    max_runs: int = setting(5, "runs of one change at most (with at most as many re-runs of the frontier)")
    min_delta: float = setting(0.001, "a win must also matter: P(better) is P(better by more than this)")
    window: int = setting(20, "frontier re-runs older than this many runs are not compared with")
    wander: float = setting(0.3, "the machine's speed may wander by this many sigma per run (random walk)")
    luck: float = setting(0.25, "the runs that got the frontier kept may share this much luck, in sigma")
    local_z: float = setting(0.5, "the frontier's re-runs beside a change must lose to it by this many standard errors")

    def rule(self) -> keeprule.Rule:
        """The test's settings (every field of keeprule.Rule has its namesake here)."""
        return keeprule.Rule(**{f.name: getattr(self, f.name) for f in fields(keeprule.Rule)})

    def check(self) -> None:
        if not 0 < self.first_stop <= self.stop < self.p_keep < 1:
            raise AutoresearchError(f"{CONFIG_NAME}: [keep] needs 0 < first_stop <= stop < p_keep < 1")
        if self.max_runs < 2 or self.baseline_runs < 1 or self.window < 1:
            raise AutoresearchError(f"{CONFIG_NAME}: [keep] needs max_runs >= 2, baseline_runs >= 1 and window >= 1")
        if self.wander < 0 or self.luck < 0:
            raise AutoresearchError(f"{CONFIG_NAME}: [keep] needs wander >= 0 and luck >= 0")


# Settings of earlier versions, read and ignored so that an older workspace still opens (the one
# place that knows them): the keep rule's sequential test replaced the single-run bar (z,
# confirm), its random-walk level the fitted straight-line drift (drift_z); the validation pin
# moved out of the settings into the engine's database (autoresearch.pins).
LEGACY = {"keep": ("z", "confirm", "confirm_all", "drift_z"), "harness": ("val_sha256",)}


@dataclass(frozen=True)
class Config:
    template: str = setting("llm")
    profile: str = setting("cpu")
    dataset: str = setting("pysource")
    budget: float = setting(60.0, "seconds of training per experiment")
    command: str = setting("python train.py")
    editable: tuple[str, ...] = setting(("train.py",), "the only files an experiment may change")
    notes: str = setting("notes.md", "the agent's notebook; may change, never scored")
    hard_limit: float = setting(0.0, "seconds the training process may run; 0 means budget + allowance")
    allowance: float = setting(0.0, "seconds beyond the budget for startup; 0 pins it once from the baseline runs "
                                    "(their slowest startup + 5 % of the budget; 30 + 10 % of the budget until then)")
    require_sandbox: bool = setting(False, "refuse to run training without a sandbox (bubblewrap on Linux)")
    track: str = setting("", "send every run to an experiment tracker: mlflow (MLFLOW_TRACKING_URI, else a store "
                             "beside the engine's records); empty: none")
    early_stop: bool = setting(False, "stop a candidate's first run whose training loss is far behind the frontier's "
                                      "at the same share of the budget; recorded as a discard (docs/keep-rule.md)")
    compile_cache: bool = setting(False, "keep a commit's torch.compile caches for the frontier's re-runs of it "
                                         "(docs/trust.md: what its first run leaves there, they read)")
    metric: str = setting("val_bpb", table="metric", key="name")
    direction: str = setting("lower", "lower or higher is better", table="metric")
    harness_record: bool = setting(True, "the run writes a JSON record to $AUTORESEARCH_RESULT", table="metric")
    harness_files: tuple[str, ...] = setting(("prepare.py",), table="harness", key="files")
    harness_sha256: str = setting("", table="harness", key="sha256")
    keep: KeepRule = field(default_factory=KeepRule, metadata={"table": "keep"})

    def to_toml(self) -> str:
        doc = tomlkit.document()
        for line in HEADER:
            doc.add(tomlkit.comment(line))
        tables = {name: tomlkit.table() for name in TABLES}
        for f in fields(self):
            if f.name == "keep":
                for k in fields(self.keep):
                    _add(tables["keep"], k.name, getattr(self.keep, k.name), k.metadata.get("comment", ""))
                continue
            target = tables[f.metadata["table"]] if f.metadata.get("table") else doc
            _add(target, f.metadata.get("key") or f.name, getattr(self, f.name), f.metadata.get("comment", ""))
        for name in TABLES:
            doc.add(tomlkit.nl())
            doc.add(name, tables[name])
        return tomlkit.dumps(doc)

    @classmethod
    def from_toml(cls, text: str) -> "Config":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AutoresearchError(f"{CONFIG_NAME} is not valid TOML: {exc}") from exc
        values: dict[str, Any] = {}
        known: dict[str, set[str]] = {"": set(), **{t: set() for t in TABLES}}
        for f in fields(cls):
            if f.name == "keep":
                table = _table(data, "keep")
                known["keep"] = {k.name for k in fields(KeepRule)}
                values["keep"] = KeepRule(**{k.name: _convert(k, table[k.name], f"keep.{k.name}")
                                             for k in fields(KeepRule) if k.name in table})
                continue
            where, key = f.metadata.get("table", ""), f.metadata.get("key") or f.name
            known[where].add(key)
            table = _table(data, where) if where else data
            if key in table:
                values[f.name] = _convert(f, table[key], f"{where}.{key}" if where else key)
        for where, keys in known.items():
            keys = keys | set(LEGACY.get(where, ()))
            table = _table(data, where) if where else data
            unknown = sorted(k for k in table if k not in keys and not (where == "" and k in TABLES))
            if unknown:
                place = f"[{where}] " if where else ""
                raise AutoresearchError(f"{CONFIG_NAME}: unknown setting {place}{unknown[0]!r}")
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Refuse settings that cannot hold: the keep rule's order, the direction, and editable
        files (or notes) that would take in the settings themselves or the harness."""
        self.keep.check()
        if self.direction not in ("lower", "higher"):
            raise AutoresearchError(f"{CONFIG_NAME}: metric direction must be 'lower' or 'higher', not {self.direction!r}")
        fixed = (CONFIG_NAME, *self.harness_files)
        for what, names in (("editable", self.editable), ("notes", (self.notes,) if self.notes else ())):
            for name in names:
                hit = next((f for f in fixed if covers(name, f)), None)
                if hit is not None:
                    raise AutoresearchError(f"{CONFIG_NAME}: {what} may not name {name!r}: {hit} is never editable "
                                            f"(the settings and the harness are fixed)")


def covers(name: str, path: str) -> bool:
    """Whether the editable entry `name` (a file, or a folder and all below it; "." the whole
    workspace) takes in the workspace's file `path`."""
    norm = posixpath.normpath(name.strip() or ".")
    return norm == "." or path == norm or path.startswith(norm + "/")


def _add(table, key: str, value: Any, comment: str) -> None:
    item = tomlkit.item(list(value) if isinstance(value, tuple) else value)
    if comment:
        item.comment(comment)
    table.add(key, item)


def _table(data: dict, name: str) -> dict:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise AutoresearchError(f"{CONFIG_NAME}: [{name}] must be a table")
    return table


def _convert(f, value: Any, name: str) -> Any:
    """A TOML value as the field's type (the type of its default); one clear line when it is not."""
    default = f.default if f.default is not MISSING else None
    kind = type(default)
    ok = True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif kind is tuple:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        raise AutoresearchError(f"{CONFIG_NAME}: {name} must be {_KINDS.get(kind, kind.__name__)}, not {value!r}")
    return value


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
          tuple: "a list of strings"}
