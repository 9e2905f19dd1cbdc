"""What one experiment produced: its rows (`make_row`) and its `Outcome`, with `lines()` for
people and `to_json()` for programs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from autoresearch.engine.measure import Measurement
from autoresearch.research.results import Row, usage_cost, usage_count


@dataclass
class Outcome:
    """What `experiment` did; `lines()` for people, `to_json()` for programs."""

    status: str
    kind: str
    description: str
    commit: str  # short sha of the code that ran (the frontier's for noop / invalid)
    metric: str
    direction: str
    value: float | None = None  # the mean of the runs
    values: list[float] = field(default_factory=list)
    frontier_before: str = ""
    frontier_value: float | None = None  # before this experiment
    frontier: str = ""  # short sha of the frontier after it
    improvement: float | None = None  # > 0 better
    p_better: float | None = None  # the keep rule's evidence at its decision
    sigma: float | None = None
    memory_gb: float | None = None  # the runs' peak; None: nothing measured it
    seconds: float = 0.0
    training_seconds: float | None = None
    steps: int | None = None
    reason: str = ""
    source: str = ""
    log_tail: str = ""
    rows: list[Row] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data["rows"] = [r.cells() for r in self.rows]
        data["delta"] = self.delta
        return data

    @property
    def delta(self) -> float | None:
        if self.value is None or self.frontier_value is None:
            return None
        return self.value - self.frontier_value

    def lines(self) -> list[str]:
        head = f"{self.status:<8}"
        if self.kind != "experiment":
            head += f" ({self.kind})"
        out = []
        if self.value is not None:
            text = f"{head} {self.metric} {self.value:.6f}"
            if self.delta is not None and self.kind != "baseline":  # new minus old, as every view shows it
                text += f" ({self.delta:+.6f} vs {self.frontier_value:.6f}"
                text += f", P(better) {self.p_better:.2f})" if self.p_better is not None else ")"
            if len(self.values) > 1:
                text += f" mean of {len(self.values)} runs"
            if self.memory_gb:  # None (or the 0.0 of before): nothing measured it, so nothing is shown
                text += f"  memory {self.memory_gb:.1f} GB"
            text += f"  {self.seconds:.1f} s  [{self.commit}]"
            out.append(text)
        else:
            out.append(f"{head} {self.seconds:.1f} s  [{self.commit}]" if self.seconds else f"{head} [{self.commit}]")
        note = self.reason
        if self.kind == "baseline":
            pass
        elif self.status == "keep":
            note += f"; frontier is now {self.frontier}"
        elif self.status in ("discard", "crash", "invalid") and self.kind != "baseline":
            note += f"; reset to the frontier {self.frontier}"
        if note:
            out.append(f"         {note.lstrip('; ')}")
        if self.status == "crash" and self.log_tail:
            out.append(f"--- end of run.log ({len(self.log_tail.splitlines())} lines) ---")
            out.append(self.log_tail)
        return out


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def usage_json(usage: Any) -> dict | None:
    """An agent's usage (a record with tokens_in, tokens_out, cost_usd, or such a dict) as a dict."""
    if usage is None:
        return None
    if isinstance(usage, dict):
        return usage
    return {"tokens_in": getattr(usage, "tokens_in", None), "tokens_out": getattr(usage, "tokens_out", None),
            "cost_usd": getattr(usage, "cost_usd", None)}


def usage_cells(usage: Any) -> dict:
    data = usage_json(usage)
    if not data:
        return {}
    out = {}
    for key, bounded in (("tokens_in", usage_count), ("tokens_out", usage_count), ("cost_usd", usage_cost)):
        value = bounded(data.get(key))
        if value is not None:
            out[key] = value
    return out


def make_row(commit: str, *, status: str, kind: str, description: str, reason: str, branch: str, agent: str = "",
             m: Measurement | None = None, usage: Any = None, worker: str = "", cause: str = "") -> Row:
    """A results row; a measurement's figures when there is one (a crash keeps its times, not
    its value). A crash is the code's unless `cause` says otherwise."""
    ok = m is not None and m.value is not None
    if status == "crash" and not cause:
        cause = "code"
    return Row(
        commit=commit[:7], value=m.value if ok else 0.0, memory_gb=m.memory_gb if ok else None, status=status,
        description=description, timestamp=utc_now(), seconds=round(m.seconds, 1) if m else None,
        training_seconds=m.training_seconds if m else None, steps=m.steps if m else None, kind=kind,
        reason=reason, agent=agent, branch=branch, worker=worker, eval_seconds=m.eval_seconds if m else None,
        engine_seconds=m.engine_seconds if m else None,
        cause=cause, sandboxed=None if m is None else not m.unsandboxed, log=m.log if m else "",
        **usage_cells(usage),
    )
