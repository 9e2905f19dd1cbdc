"""Measure one run: the metric from the harness's record, checked by the engine's clock.

`measure(config, limits, outcome, log, result_path, pinned)` turns what a run left behind
into a `Measurement`: a value, or None with a one-line reason (a crash). With a harness
record (the LLM template) the value comes from the record, which must carry the harness's
fingerprint and the pinned validation split, and must agree with the printed line; a
blank-template workspace reads the printed `NAME: value` line and says so. The budget is
checked twice: the printed training seconds, and the wall clock minus the evaluation.

The helpers that read run.log (the summary block, a printed value, the last traceback, a
one-line crash reason) live here too.
"""

from __future__ import annotations

import json
import math
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from autoresearch import runlog
from autoresearch.config import Config
from autoresearch.files import read_tail
from autoresearch.pins import Pins
from autoresearch.proc import RunOutcome
from autoresearch.research.results import Row

# The trainer's deadline: one fixed wall-clock limit of the whole training process, from its
# start, the same for every run of the workspace, whatever the run does with clocks or before and
# after its timed loop. Once the first baseline is measured (the unchanged code, run by the
# engine), what it spent outside training (startup, untimed warm-up steps, hand-over, exit; the
# most of any of its runs) is pinned outside the workspace (pins.Pins.baseline_startup), and
# every later run gets budget + that + DEADLINE_SLACK of the budget. Nothing is re-derived, so
# no change can widen it by running slowly, and there is no per-run slack a change could spend
# on training: at most 5 % of the budget beyond what the baseline itself needs. The template's
# train.py reads the deadline (prepare.deadline()) and stops training early enough to hand over
# when it started slowly. Measured on the CPU profile (20 s budget, 2 shared cores, sandboxed):
# the baseline's two runs spent 4.1 s and 5.4 s outside training (about 2 s to the first timed
# step, 0.5 to 1.3 s to hand over, 0.6 s starting and ending the sandbox and the interpreter,
# the rest the loop's own bookkeeping between steps), so the deadline was 20 + 5.4 + 1 = 26.4 s;
# nine later runs of the unchanged template took 24.1 to 25.6 s.
# `allowance` in autoresearch.toml overrides it. Before the baseline is pinned, the baseline's
# own runs get 30 s plus 10 % of the budget (a cold torch.compile of the reference model takes
# about 53 s on an H100, inside the 60 s this gives a 300 s budget).
ALLOWANCE_BASE = 30.0
ALLOWANCE_FRAC = 0.10
# What is pinned is at most STARTUP_CAP s or STARTUP_CAP_FRAC of the budget, whichever is larger:
# a baseline that was made slow on purpose (an agent with git can commit one before the first
# baseline runs) would otherwise hand every later run its padding to train in. The honest
# figures sit well inside: 4 to 6 s on the CPU profile's 20 s budget, and a cold compile of
# the reference model (about 53 s) plus its hand-over on the 300 s GPU budget, against 75 s.
STARTUP_CAP = 10.0
STARTUP_CAP_FRAC = 0.25
DEADLINE_SLACK = 0.05
# The evaluator's wall-clock limit: 10 x the slowest baseline evaluation (the evaluator process
# as the engine timed it from its "go", once the trainer ended), at least 120 s; 600 s until one is pinned. It
# stops a hand-over that would hold the evaluator for good, not a slow one: a timeout is the
# code's crash, so the margin must cover a machine that gets busy. On the 2-core CPU machine an
# evaluation of 12 s quiet took 37 s with another job running, and more than 60 s with two.
EVALUATOR_DEFAULT = 600.0
EVALUATOR_MIN = 120.0
EVALUATOR_FACTOR = 10.0
# The evaluation pinned is at most EVALUATION_CAP s or EVALUATION_CAP_FRAC of the budget,
# whichever is larger, for the reason the start-up is capped: a first baseline made slow to score
# on purpose would widen every later run's evaluator limit, time a program could spend computing
# on data it carries. The CPU profile's baseline evaluations take 5 to 12 s quiet, 37 s busy.
EVALUATION_CAP = 30.0
EVALUATION_CAP_FRAC = 0.25
# An honest training loop checks the clock after each step, so it may overrun by one step:
# the printed training time may pass the budget by 3 s, 2 % of the budget, or two average
# steps, whichever is largest (a slow CPU can take seconds per step).
OVERRUN_MIN = 3.0
OVERRUN_FRAC = 0.02
OVERRUN_STEPS = 2.0
TRACEBACK_LINES = 50
MAX_STEPS = 1e12  # a printed num_steps beyond this is not recorded
MAX_SECONDS = 1e9  # nor a printed training_seconds beyond this (or below 0)
LOG_READ_BYTES = 512 * 1024  # only the end of a long run.log is read
PRINTED = "printed line"
HARNESS = "harness record"

_SUMMARY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s+(\S.*?)\s*$")


@dataclass(frozen=True)
class Limits:
    budget: float
    allowance: float  # seconds beyond the budget the training process may run, from its start
    hard: float  # wall-clock limit of the whole training process: its deadline, from its start
    overrun: float  # how far past the budget the printed training_seconds may go
    basis: str = ""  # where the allowance comes from, for messages
    evaluator: float = EVALUATOR_DEFAULT  # wall-clock limit of the evaluator process

    @classmethod
    def of(cls, cfg: Config, pinned: Pins | None = None) -> "Limits":
        """The limits of the next run; `pinned` holds what the baseline needed, once measured."""
        # the caps again, for pins written before there were caps (what is pinned now is capped)
        startup = pinned.baseline_startup if pinned is not None else None
        startup = min(startup, startup_cap(cfg.budget)) if startup is not None else None
        if cfg.allowance > 0:
            allowance, basis = cfg.allowance, "set in autoresearch.toml"
        elif startup is None:
            allowance = ALLOWANCE_BASE + ALLOWANCE_FRAC * cfg.budget
            basis = f"{ALLOWANCE_BASE:g} s + {100 * ALLOWANCE_FRAC:g} % of the budget, until the baseline is pinned"
        else:
            allowance = round(startup + DEADLINE_SLACK * cfg.budget, 2)
            basis = (f"pinned: the baseline's {startup:g} s outside training + {100 * DEADLINE_SLACK:g} % "
                     f"of the budget")
        # the training process is killed at its deadline: the budget and the allowance, from its start
        hard = cfg.hard_limit if cfg.hard_limit > 0 else cfg.budget + allowance
        evaluation = pinned.baseline_eval if pinned is not None else None
        evaluation = min(evaluation, evaluation_cap(cfg.budget)) if evaluation is not None else None
        evaluator = (EVALUATOR_DEFAULT if evaluation is None
                     else max(EVALUATOR_MIN, round(EVALUATOR_FACTOR * evaluation, 1)))
        return cls(cfg.budget, allowance, hard, max(OVERRUN_MIN, OVERRUN_FRAC * cfg.budget), basis, evaluator)

    def describe(self) -> str:
        return f"budget {self.budget:g} s, startup allowance {self.allowance:g} s ({self.basis}), hard limit {self.hard:g} s"


def startup_seconds(row: Row, budget: float) -> float | None:
    """What a measured run spent outside training: its wall time less the training it printed
    (or less the budget, when it printed none)."""
    if row.seconds is None:
        return None
    training = row.training_seconds if row.training_seconds is not None and row.training_seconds > 0 else budget
    return max(0.0, row.seconds - training)


def startup_cap(budget: float) -> float:
    """The most time outside training a baseline can pin for the runs after it."""
    return max(STARTUP_CAP, STARTUP_CAP_FRAC * budget)


def evaluation_cap(budget: float) -> float:
    """The slowest baseline evaluation that is pinned as such; a slower one pins this."""
    return max(EVALUATION_CAP, EVALUATION_CAP_FRAC * budget)


def baseline_startup(rows: Iterable[Row], budget: float) -> float | None:
    """The most any measured baseline run in `rows` spent outside training, at most
    `startup_cap(budget)` (None: none yet)."""
    spent = [s for r in rows if r.kind == "baseline" and r.status == "keep"
             for s in [startup_seconds(r, budget)] if s is not None]
    return round(min(max(spent), startup_cap(budget)), 1) if spent else None


@dataclass(frozen=True)
class Measurement:
    value: float | None  # None: the run is a crash
    reason: str = ""  # why it crashed
    source: str = ""  # HARNESS or PRINTED
    memory_gb: float | None = None  # the run's peak: GPU memory, else resident memory; None: not measured
    training_seconds: float | None = None
    steps: int | None = None
    seconds: float = 0.0
    log_tail: str = ""
    unsandboxed: bool = False  # the run went without a sandbox (none could be had here)
    eval_seconds: float | None = None  # the evaluator process's wall time, by the engine's clock
    engine_seconds: float | None = None  # the runner's own time around the two processes
    log: str = ""  # the run's own log, kept by the engine (autoresearch.runlog.RunLogs)
    hopeless: bool = False  # stopped early: its training curve was far behind the frontier's (engine/earlystop.py)

    @property
    def ok(self) -> bool:
        return self.value is not None


# ---------------------------------------------------------------------------
# Reading run.log


def read_log(path: Path, limit: int = LOG_READ_BYTES) -> str:
    """The end of a run's log as a terminal shows it (autoresearch.runlog.text)."""
    return runlog.text(read_tail(path, limit) or "")


def summary(log: str) -> dict[str, str]:
    """The `name: value` lines after the last `---` line (the whole log when there is none)."""
    lines = log.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "---":
            lines = lines[i + 1 :]
            break
    found: dict[str, str] = {}
    for line in lines:
        m = _SUMMARY.match(line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def printed_value(log: str, name: str) -> str | None:
    """The value of the last `NAME: value` line anywhere in the log."""
    pattern = re.compile(rf"^\s*{re.escape(name)}:\s*(\S+)\s*$")
    for line in reversed(log.splitlines()):
        m = pattern.match(line)
        if m:
            return m.group(1)
    return None


def number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def traceback_tail(log: str, limit: int = TRACEBACK_LINES) -> str:
    """The last traceback in the log (at most `limit` lines); else the last lines of the log."""
    lines = [line.rstrip() for line in log.rstrip().splitlines()]
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last)"):
            start = i
            break
    if start is None:
        return "\n".join(lines[-min(limit, 20) :])
    return "\n".join(lines[start:][-limit:])


def crash_reason(log: str, returncode: int | None) -> str:
    """One short line: why a run failed."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    tail = "\n".join(lines[-60:])
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    if any(line == "FAIL" for line in lines[-20:]):
        return "diverged (printed FAIL)"
    last = ""
    if "Traceback (most recent call last)" in tail:
        tb = traceback_tail(log).splitlines()
        last = next((line.strip() for line in reversed(tb) if line.strip()), "")
    elif lines:
        last = lines[-1]
    oom = re.search(r"MemoryError|out of memory|OutOfMemoryError", tail, re.IGNORECASE)
    if oom:
        return ("out of memory: " + last)[:200] if last else "out of memory"
    code = f"exit status {returncode}"
    return f"{code}: {last}"[:200] if last else code


# ---------------------------------------------------------------------------
# The measurement


def _record(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _memory_gb(printed: dict[str, str]) -> float | None:
    """The run's peak memory as it printed it: the GPU's when it used one, else the process's
    resident memory; None when it printed neither (never a made-up 0)."""
    for name in ("peak_vram_mb", "peak_rss_mb"):
        mb = number(printed.get(name))
        if mb is not None and math.isfinite(mb) and mb > 0:
            return mb / 1024
    return None


def measure(cfg: Config, lim: Limits, outcome: RunOutcome, log: str, result_path: Path, pinned: str,
            evaluation: RunOutcome | None = None, *, harness_pin: str = "") -> Measurement:
    """What one run measured; a crash (value None) with a reason when anything is wrong.

    `outcome` is the training run's, timed by the engine; with a harness, `evaluation` is the
    evaluator's and the value comes from the record it wrote to `result_path`."""
    printed = summary(log)
    memory_gb = _memory_gb(printed)
    # what the trainer printed is a time or a count only within reason (a negative time, or a
    # count past the database's integers, which end at 2^63, is recorded as none)
    said = number(printed.get("training_seconds"))
    training = said if said is not None and 0 <= said < MAX_SECONDS else None
    steps_f = number(printed.get("num_steps"))
    steps = int(steps_f) if steps_f is not None and 0 <= steps_f < MAX_STEPS else None

    def crash(reason: str) -> Measurement:
        return Measurement(None, reason, training_seconds=training, steps=steps, seconds=outcome.seconds,
                           log_tail=traceback_tail(log))

    if outcome.error:
        return crash(outcome.error)
    if outcome.timed_out:
        return crash(f"over budget: killed after {lim.hard:g} s (budget {lim.budget:g} s + startup allowance "
                     f"{lim.allowance:g} s)" if abs(lim.hard - lim.budget - lim.allowance) < 1e-6
                     else f"timeout: killed after {lim.hard:g} s (the hard limit)")
    if outcome.returncode != 0:
        return crash(crash_reason(log, outcome.returncode))
    over = _over_budget(lim, training, steps, outcome.seconds)
    if not over and said is not None and said >= MAX_SECONDS:  # not recorded, but past any budget
        over = f"over budget: printed a training time of {said:.3g} s, budget {lim.budget:g} s"
    if over:
        return crash(over)

    if cfg.harness_record:
        record = _record(result_path)
        if evaluation is None or record is None or (evaluation.returncode != 0 and "error" not in record):
            why = "did not run" if evaluation is None else (
                evaluation.error or ("timed out" if evaluation.timed_out else f"exit status {evaluation.returncode}"))
            return crash(f"no evaluation: the engine's evaluator {why}")
        if "error" in record:
            return crash(str(record["error"])[:300])
        problem = _record_problem(cfg, record, pinned, harness_pin)
        if problem:
            return crash(problem)
        value = number(str(record[cfg.metric if cfg.metric in record else "val_bpb"]))
        source = HARNESS
        # what the evaluator's limit follows (Limits.evaluator): the process as the engine timed
        # it from its "go" to its end, not only the scoring the record's eval_seconds counts
        eval_seconds = round(evaluation.seconds, 1)
    else:
        value = number(printed_value(log, cfg.metric))
        if value is None:
            return crash(f"exit 0 but no `{cfg.metric}: <number>` line printed")
        if not math.isfinite(value):
            return crash(f"{cfg.metric} is not finite ({value})")
        source = PRINTED
        eval_seconds = None
    return Measurement(value, "", source, memory_gb, training, steps, outcome.seconds, eval_seconds=eval_seconds)


def _record_problem(cfg: Config, record: dict, pinned: str, harness_pin: str) -> str:
    """Why the evaluator's record cannot be used ("" when it can)."""
    key = cfg.metric if cfg.metric in record else "val_bpb"
    value = number(str(record.get(key)))
    if value is None:
        return f"the harness record has no {key}"
    if harness_pin and record.get("harness_sha256") != harness_pin:
        return "the harness record comes from a different prepare.py (fingerprint mismatch)"
    if pinned and record.get("val_sha256") != pinned:
        return "the harness record is for a different validation split (val_sha256 mismatch)"
    if not math.isfinite(value):
        return f"{cfg.metric} is not finite ({value})"
    return ""


def _over_budget(lim: Limits, training: float | None, steps: int | None, seconds: float) -> str:
    """The engine's clock: the training process's wall time (evaluation is another process),
    and the training time it printed."""
    beyond = seconds - lim.budget
    if beyond > lim.allowance:
        return (f"over budget: the training process ran {seconds:.1f} s, {beyond:.1f} s beyond the "
                f"{lim.budget:g} s budget (startup allowance {lim.allowance:g} s)")
    step_time = training / steps if training is not None and steps else 0.0
    if training is not None and training > lim.budget + max(lim.overrun, OVERRUN_STEPS * step_time):
        return f"over budget: trained {training:.1f} s, budget {lim.budget:g} s"
    return ""
