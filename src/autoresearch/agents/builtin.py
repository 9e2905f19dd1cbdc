"""The built-in proposer: hyperparameter search over train.py's ALL_CAPS constants. Offline.

It reads the hyperparameter block of the first editable Python file (the ALL_CAPS literal
constants above the first function or class), derives a search range for each from its
value at the start of the branch (`searchspace`), and writes new values back in place with the file's
formatting and comments untouched. It never changes code, only values, so it is the
AutoML baseline the language-model agents have to beat.

Each proposal is one of three kinds:

1. After a kept change, the same move again from the new frontier ("follow"): each number
   it moved is moved as far again in the same direction on its search scale (a rate that
   won at x2.5 is tried at x2.5 more), up to the end of its range. A follow that is kept is
   followed in turn.
2. Otherwise, until each has had its turn and before any draw, the opening: the knobs in
   OPENING (the model's size, the batch, the learning rates, the warm-up and warm-down), each
   alone, one step down and one step up; a step that won is followed (1.) and not stepped back
   (with several workers both ways may be in flight at once).
3. Otherwise a screened draw ("draw"). One to three knobs are drawn, each set to a value drawn
   over its whole range but at least MIN_MOVE of the range away from the frontier's: a move
   too small to show against the noise of one run costs runs and can only be discarded.
   Of CANDIDATES such draws, the one the `Model` of every result so far rates best is
   proposed: the lowest expected change of the metric less its uncertainty. So every knob is
   tried early (the unseen are uncertain; the usual suspects, PRIORITY, a little more), a
   region that lost clearly is seldom drawn again, the other side of a knob whose move lost is,
   and a loss shared by several knobs is told apart by the trials that follow.

Nothing already run or in flight is proposed again. Shape invariants are kept: a device
batch larger than the total batch (in tokens, at the harness's MAX_SEQ_LEN) is halved until
it fits. The search state (the ranges, every trial and its result) lives in the workspace's
state folder, one file per branch, so a resumed loop goes on where it stopped.

Measured against random search over the same knobs with the same keep rule in
bench/night.py (docs/benchmarks.md, "A night, measured" and the nights after it).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import asdict
from pathlib import Path
from statistics import median
from typing import Any

from autoresearch import capsliterals, gitrepo
from autoresearch.agents.base import Agent, Context, Proposal
from autoresearch.agents.searchspace import (Param, changed_constants, derive, fit_device_batch, harness_seq_len,
                                             hyperparameters, values_of, vector_key)
from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write, read_own, real_folder
from autoresearch.research.history import History

STATE_VERSION = 2  # 1: coordinate steps then TPE (its state is not carried over: the search starts afresh)
MIN_MOVE = 0.15  # the least move of a drawn knob, as a share of its range on the search scale
CANDIDATES = 32  # draws the model screens for each proposal
EXPLORE = 1.0  # the weight of the bonus for the unseen against what the model expects
# The knobs that most often matter in a training script (learning rates, schedule, batch, shape):
# before anything is known, their bonus is PRIOR times the others', so they are drawn first.
PRIORITY = {
    "MATRIX_LR", "EMBEDDING_LR", "UNEMBEDDING_LR", "SCALAR_LR", "LR", "LEARNING_RATE", "WARMDOWN_RATIO",
    "WARMUP_RATIO", "TOTAL_BATCH_SIZE", "DEPTH", "WEIGHT_DECAY", "ASPECT_RATIO", "N_EMBD", "N_LAYER",
}
PRIOR = 1.25
COVER = 1.0  # the bonus for a side of a knob never tried, in units of the model's scale
LEARNT = ("keep", "discard", "crash")  # the statuses of the trials the model learns from
CLIP = 3.0  # the largest change the model is told of, either way, in units of its scale
# Tried first, each alone, one step each way from the frontier: the knobs that most often decide a
# run of fixed length, how big the model is and how many tokens a step takes (so how many steps
# fit), then the learning rates, then the schedule's two ends (a warm-up was among the changes kept
# on three of the CPU default's measured nights, each time found by a draw). Alone, so a result is
# the knob's own; a step that wins is followed, one that loses clearly costs one run. In this
# order; the ones a file does not have are passed over.
OPENING = ("DEPTH", "N_LAYER", "ASPECT_RATIO", "N_EMBD", "TOTAL_BATCH_SIZE", "BATCH_SIZE",
           "MATRIX_LR", "EMBEDDING_LR", "UNEMBEDDING_LR", "SCALAR_LR", "LR", "LEARNING_RATE",
           "WARMUP_RATIO", "WARMDOWN_RATIO")


class BuiltinAgent(Agent):
    name = "builtin"
    description = "Offline hyperparameter search (an opening of single steps, model-screened draws, a kept move followed) over train.py's ALL_CAPS constants"

    # -- state ---------------------------------------------------------------

    def _state_path(self, ctx: Context) -> Path:
        branch = str(ctx.extra.get("branch") or "")
        if not branch:
            branch = gitrepo.current_branch(Path(ctx.root)) or "detached"
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", branch)
        return Path(ctx.state_dir) / "builtin" / f"{safe}.json"

    @staticmethod
    def _load(path: Path) -> dict | None:
        raw = read_own(path, 16 * 1024 * 1024)
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return data if isinstance(data, dict) and data.get("version") == STATE_VERSION else None

    @staticmethod
    def _save(path: Path, state: dict) -> None:
        real_folder(real_folder(path.parent.parent) / path.parent.name)  # .autoresearch/builtin/, no link in either
        atomic_write(path, json.dumps(state, indent=1, default=_jsonable) + "\n")

    # -- the proposal ----------------------------------------------------------

    def propose(self, context: Context) -> Proposal:
        target, text = self._target(context)
        consts = hyperparameters(text)
        path = self._state_path(context)
        state = self._load(path)
        if state is None or state.get("target") != target:
            params = [p for name, c in consts.items() for p in derive(name, c.value)]
            if not params:
                raise AutoresearchError(f"no hyperparameters to search in {target} (no ALL_CAPS literal constants)")
            state = {"version": STATE_VERSION, "target": target, "params": [asdict(p) for p in params],
                     "trials": [], "pendings": [], "follow": None}
        params = [Param(**p) for p in state["params"]]
        params = [p for p in params if p.constant in consts]
        if not params:
            raise AutoresearchError(f"the hyperparameters the search started with are gone from {target}")
        self._settle(state, context)
        frontier = values_of(params, consts)
        params = [p for p in params if p.name in frontier]
        self._note_frontier(state, frontier, context)
        seq_len = harness_seq_len(Path(context.root))
        tried = {t["key"] for t in state["trials"]} | {p["key"] for p in state["pendings"]}  # in flight too
        tried.add(vector_key(frontier))
        # the draws differ between lines (branches) and from one proposal to the next, and repeat on a re-run
        line = path.stem
        seed = int(hashlib.sha256(f"{line}:{target}:{len(state['trials'])}:{len(state['pendings'])}".encode()).hexdigest()[:8], 16)
        rng = random.Random(seed)

        opening = None
        change, how = self._follow(state, params, frontier, tried, seq_len), "follow"
        if change is None:
            opening, change = self._opening(state, params, frontier, tried, seq_len)
            how = "opening"
        if change is None:
            change, how = self._draw(state, params, frontier, tried, seq_len, rng, context.direction), "draw"
        if change is None:
            change, how = self._step(params, frontier, tried, seq_len, rng), "step"
        if change is None:
            raise AutoresearchError("the search space is exhausted: every nearby configuration already ran")

        new_values = dict(frontier, **change)
        self._write(context, target, text, consts, params, new_values)
        description = self._describe(consts, params, frontier, new_values)
        state["pendings"].append({"values": new_values, "key": vector_key(new_values), "rows_before": len(context.rows),
                                  "how": how, "opening": opening, "description": description,
                                  "moves": change, "from": {k: frontier[k] for k in change},
                                  "base": History(context.rows).frontier_value})
        self._save(path, state)
        return Proposal(description)

    def _target(self, ctx: Context) -> tuple[str, str]:
        for name in ctx.editable:
            if not name.endswith(".py"):
                continue
            text = ctx.files.get(name)
            if text is None:
                p = Path(ctx.root) / name
                text = p.read_text() if p.is_file() else ""
            try:
                consts = hyperparameters(text)
            except (AutoresearchError, SyntaxError):
                continue
            if any(derive(n, c.value) for n, c in consts.items()):
                return name, text
        raise AutoresearchError("the built-in agent found no Python file with ALL_CAPS hyperparameters among the editable files")

    # -- results -----------------------------------------------------------------

    @classmethod
    def _settle(cls, state: dict, ctx: Context) -> None:
        """Attach the outcome of earlier proposals (from the rows the engine wrote). With several
        workers (`run --workers N`) some are still in flight: they stay pending, and tried."""
        pendings = state.pop("pendings", None) or []
        in_flight = str(ctx.extra.get("in_flight") or "")
        state["pendings"] = []
        for pending in pendings:
            outcome = cls._settle_one(state, ctx, pending)
            if outcome == "waiting" and pending.get("description", "\0") in in_flight:
                state["pendings"].append(pending)

    @staticmethod
    def _settle_one(state: dict, ctx: Context, pending: dict) -> str:
        rows = list(ctx.rows)
        start = int(pending.get("rows_before", len(rows)))
        if start > len(rows):
            return "gone"
        # the first experiment since the proposal with its description that no other proposal has
        # (with several workers, two proposals may read alike: each has its own commit)
        used = {t.get("commit") for t in state["trials"]}
        mine = [r for r in rows[start:] if r.kind in ("experiment", "confirm") and r.commit not in used
                and r.description == pending.get("description", r.description)]
        if not mine:
            return "waiting"  # in flight, or never ran (the loop stopped before the experiment)
        mine = [r for r in mine if r.commit == mine[0].commit]
        first = mine[0]
        if first.status == "interrupted" or first.cause not in ("", "code", "hopeless"):
            return "again"  # stopped, or failed by the machine or the engine (Row.cause): may be proposed again
        measured = [r.value for r in mine if r.measured]  # a run stopped early (hopeless) has no value
        trial = {"values": pending["values"], "key": pending["key"], "status": first.status, "commit": first.commit,
                 "value": sum(measured) / len(measured) if measured else None,
                 "how": pending.get("how"), "opening": pending.get("opening"),
                 "description": pending.get("description", ""), "moves": pending.get("moves", {}),
                 "from": pending.get("from", {}), "base": pending.get("base")}
        state["trials"].append(trial)
        # a kept move is tried again from the new frontier; anything else ends a follow
        state["follow"] = {"from": trial["from"], "to": trial["moves"]} if first.status == "keep" else None
        return "settled"

    def _note_frontier(self, state: dict, frontier: dict, ctx: Context) -> None:
        """The frontier is a trial too (the baseline, or code some other agent or a human wrote)."""
        key = vector_key(frontier)
        if any(t["key"] == key for t in state["trials"]):
            return
        value = History(ctx.rows).frontier_value
        if value is not None:
            state["trials"].append({"values": frontier, "key": key, "status": "keep", "value": value,
                                    "how": "frontier", "description": "frontier"})

    # -- proposals -------------------------------------------------------------------

    def _follow(self, state, params, frontier, tried, seq_len) -> dict | None:
        """The kept move again: each number moved as far again on its scale, from where it is now."""
        follow, state["follow"] = state.get("follow"), None
        if not follow:
            return None
        change = {}
        for p in params:
            if p.name not in follow["to"] or p.name not in follow["from"] or p.kind in ("cat", "bool"):
                continue
            shift = p.position(follow["to"][p.name]) - p.position(follow["from"][p.name])
            new = p.at(p.position(frontier[p.name]) + shift)
            if new != frontier[p.name]:
                change[p.name] = new
        change = self._fix_shapes(params, frontier, change, seq_len)
        return change if change and vector_key(dict(frontier, **change)) not in tried else None

    def _opening(self, state, params, frontier, tried, seq_len) -> tuple[str | None, dict | None]:
        """The next knob of OPENING not yet stepped alone that way (run, or in flight): one step."""
        if any(t.get("how") in ("draw", "step") for t in state["trials"]):
            return None, None  # once the draws began (or a search from before the opening resumed)
        done = {t.get("opening") for t in state["trials"]} | {p.get("opening") for p in state["pendings"]}
        won = {t.get("opening") for t in state["trials"] if t.get("status") == "keep"}
        order = {name: i for i, name in enumerate(OPENING)}
        for p in sorted((p for p in params if p.constant in order), key=lambda p: order[p.constant]):
            if p.kind in ("cat", "bool"):
                continue
            for direction in (-1, 1):  # down first: a smaller model or batch fits more steps in the time
                label = f"{p.name}:{direction:+d}"
                new = p.step(frontier[p.name], direction)
                if label in done or f"{p.name}:{-direction:+d}" in won or new is None:  # not back from a win
                    continue
                change = self._fix_shapes(params, frontier, {p.name: new}, seq_len)  # the step itself stays
                if vector_key(dict(frontier, **change)) not in tried:
                    return label, change
        return None, None

    def _draw(self, state, params, frontier, tried, seq_len, rng, direction) -> dict | None:
        """The best of CANDIDATES draws of one to three knobs (as many in each), by the model."""
        model = Model(params, state["trials"], higher=direction == "higher")
        k = rng.randint(1, min(3, len(params)))
        candidates: dict[str, dict] = {}
        for _ in range(CANDIDATES * 4):
            if len(candidates) >= CANDIDATES:
                break
            drawn = {}
            for p in rng.sample(params, k):
                value = _far(p, frontier[p.name], rng)
                if value is not None:
                    drawn[p.name] = value
            change = self._fix_shapes(params, frontier, drawn, seq_len)
            if any(change.get(name) != value for name, value in drawn.items()):
                continue  # the shape rule undid a knob drawn (a device batch raised past the total)
            key = vector_key(dict(frontier, **change))
            if change and key not in tried:
                candidates.setdefault(key, change)
        if not candidates:
            return None
        return min(candidates.values(), key=lambda c: model.score(frontier, c))  # the first of equals: a draw like any other

    def _step(self, params, frontier, tried, seq_len, rng) -> dict | None:
        """The last resort when draws find nothing new: one knob one step from the frontier."""
        for _ in range(200):
            p = rng.choice(params)
            new = p.step(frontier[p.name], rng.choice((-1, 1)))
            if new is None:
                continue
            change = self._fix_shapes(params, frontier, {p.name: new}, seq_len)
            if change and vector_key(dict(frontier, **change)) not in tried:
                return change
        return None

    # -- writing -----------------------------------------------------------------

    @staticmethod
    def _fix_shapes(params, frontier, change, seq_len) -> dict:
        """Keep TOTAL_BATCH_SIZE a multiple of DEVICE_BATCH_SIZE * MAX_SEQ_LEN (halve the device batch)."""
        fitted = fit_device_batch(dict(frontier, **change), seq_len)
        if fitted.get("DEVICE_BATCH_SIZE") != dict(frontier, **change).get("DEVICE_BATCH_SIZE"):
            change = dict(change, DEVICE_BATCH_SIZE=fitted["DEVICE_BATCH_SIZE"])
        return {k: v for k, v in change.items() if v != frontier.get(k)}

    @staticmethod
    def _write(ctx: Context, target: str, text: str, consts, params, values: dict) -> None:
        new_text = capsliterals.write_constants(text, changed_constants(params, consts, values))
        (Path(ctx.root) / target).write_text(new_text)

    @staticmethod
    def _describe(consts, params, before: dict, after: dict) -> str:
        parts = []
        seen = set()
        for p in params:
            if p.name not in after or after[p.name] == before.get(p.name) or p.constant in seen:
                continue
            seen.add(p.constant)
            c = consts[p.constant]
            if p.index is None:
                old, new = c.value, after[p.name]
            else:
                old = c.value
                new = list(old)
                for q in params:
                    if q.constant == p.constant and q.index is not None and q.name in after:
                        new[q.index] = after[q.name]
                new = tuple(new) if isinstance(old, tuple) else new
            parts.append(f"{p.constant} {_show(old, c.source)} -> {_show(new, c.source)}")
        return ", ".join(parts) if len(parts) <= 4 else ", ".join(parts[:4]) + f" (+{len(parts) - 4} more)"


def _show(value: Any, like: str) -> str:
    try:
        return capsliterals.format_value(value, like)
    except AutoresearchError:
        return repr(value)


def _far(p: Param, current: Any, rng: random.Random) -> Any | None:
    """A value drawn over the knob's range, at least MIN_MOVE of it away from `current`."""
    for _ in range(12):
        value = p.from_internal(p.draw(rng))
        if value != current and (p.kind in ("cat", "bool") or p.distance(value, current) >= MIN_MOVE):
            return value
    return None


class Model:
    """What a move does, learnt from the moves made: a Bayesian linear model, additive over knobs.

    Each knob's effect is a function of where it sits in its range, a slope plus a bowl (a
    choice: one value per choice), so a move's effect is the function at the new value less at
    the old, summed over the knobs it moved: a move up that lost says a move down may win,
    unless moves down lost too (a bowl). Every trial is one such sum plus the error
    of the frontier estimate it was measured against (one unknown per frontier), plus noise.
    With a Gaussian prior on everything, the fit gives each candidate move an expected change
    and an uncertainty: a knob never moved is uncertain; a loss shared by three knobs stays
    uncertain for each until other trials tell them apart; a region that lost alone is known.
    Older trials count for less (their noise's variance doubled for each change kept since), as the
    frontier they were measured from is gone and knobs interact.

    The unit is `scale`, the typical size of a result's change (the median distance of the
    changes from the median of those measured from the same frontier): the prior on a knob's effect and the noise are both
    that large, and PRIOR times it for the knobs in PRIORITY.
    """

    def __init__(self, params: list[Param], trials: list[dict], *, higher: bool = False):
        import numpy as np

        self.params = by_name = {p.name: p for p in params}
        self.slots: dict[str, int] = {}
        n = 0
        for p in params:
            self.slots[p.name] = n
            n += self._width(p)
        self.n = n  # the knobs' columns; the frontiers' unknowns follow them
        sign = -1.0 if higher else 1.0
        # what the engine decided on a measurement (or a crash of the code); not a no-op (the same
        # code ran before), an invalid change or one overtaken by another worker's keep
        rows = [t for t in trials if t.get("how") != "frontier" and t.get("base") is not None
                and t.get("moves") and t.get("from") is not None and t.get("status") in LEARNT]
        bases = sorted({t["base"] for t in rows})
        changes = {b: [sign * (t["value"] - b) for t in rows if t["base"] == b and t.get("value") is not None] for b in bases}
        every = [c for cs in changes.values() for c in cs]
        # what moves from a frontier usually did (their median): the changes' spread is measured
        # from it and they are clipped around it; the fit's per-frontier unknown takes it up
        centre = {b: median(cs) if len(cs) >= 3 else (median(every) if every else 0.0) for b, cs in changes.items()}
        spread = [abs(c - centre[b]) for b, cs in changes.items() for c in cs]
        size = abs(rows[-1]["base"]) if rows else 1.0
        self.scale = max(median(spread) if len(spread) >= 3 else 0.0, 0.002 * size) or 1e-3
        # A change counts as at most CLIP times the scale either way, a crash as a loss that large:
        # enough to tell a clear loss or win, and one diverged run (hundreds of times the scale)
        # or one large win does not outweigh every other trial of that knob
        worst = CLIP * self.scale
        prior = np.array([(PRIOR if p.constant in PRIORITY else 1.0) * self.scale
                          for p in params for _ in range(self._width(p))] + [self.scale] * len(bases))
        x = np.zeros((len(rows), n + len(bases)))
        y = np.zeros(len(rows))
        noise = np.zeros(len(rows))
        keeps_after = 0
        for r, t in reversed(list(enumerate(rows))):
            x[r, :n] = self._move(t["from"], t["moves"])
            x[r, n + bases.index(t["base"])] = 1.0
            c = centre[t["base"]]  # clipped around what moves from that frontier usually did
            y[r] = c + (worst if t.get("value") is None else max(-worst, min(sign * (t["value"] - t["base"]) - c, worst)))
            noise[r] = self.scale * math.sqrt(2.0 ** keeps_after)
            keeps_after += t.get("status") == "keep"
        # the sides of each knob tried so far (up or down from the frontier of the time; a choice: the value)
        self.sides = {(n, _side(by_name[n], t["from"][n], v)) for t in rows for n, v in t["moves"].items()
                      if n in by_name and n in t["from"]}
        precision = np.diag(1.0 / prior ** 2) + (x.T / noise ** 2) @ x
        self.cov = np.linalg.inv(precision)
        self.mean = self.cov @ (x.T @ (y / noise ** 2))

    def _width(self, p: Param) -> int:
        return len(p.choices) if p.kind in ("cat", "bool") else 2

    def _features(self, p: Param, value: Any) -> list[float]:
        if p.kind in ("cat", "bool"):
            return [1.0 if value == c else 0.0 for c in p.choices]
        x = p.position(value)
        return [x, 4.0 * (x - 0.5) ** 2]  # a slope and a bowl across the range

    def _move(self, before: dict[str, Any], after: dict[str, Any]):
        import numpy as np

        d = np.zeros(self.n)
        for name, value in after.items():
            p = self.params.get(name)
            if p is None or name not in before:
                continue
            at = self.slots[name]
            d[at:at + self._width(p)] += np.subtract(self._features(p, value), self._features(p, before[name]))
        return d

    def expected(self, frontier: dict[str, Any], change: dict[str, Any]) -> float:
        """The change of the metric the model expects from a move (lower is better, whatever the direction)."""
        return float(self._move(frontier, change) @ self.mean[:self.n])

    def score(self, frontier: dict[str, Any], change: dict[str, Any]) -> float:
        """The expected change of the metric for a move (lower is better) less its uncertainty."""
        d = self._move(frontier, change)
        size = float(d @ d)
        if size == 0.0:
            return 0.0
        mean = float(d @ self.mean[:self.n])
        # the uncertainty per unit of move: a far move is not more attractive for being far
        unsure = math.sqrt(max(float(d @ self.cov[:self.n, :self.n] @ d), 0.0) / size)
        # and a side of a knob never tried (the other side of one that lost, say) goes first:
        # a flat stretch tells the model nothing, so it would not send the search there
        moved = [n for n in change if n in self.params and n in frontier]
        new = sum((n, _side(self.params[n], frontier[n], change[n])) not in self.sides for n in moved)
        return mean - EXPLORE * unsure - COVER * self.scale * new / max(len(moved), 1)


def _side(p: Param, before: Any, after: Any) -> Any:
    """Which way a move went: up or down the range (a choice: the value chosen)."""
    if p.kind in ("cat", "bool"):
        return after
    return 1 if p.position(after) > p.position(before) else -1


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return str(value)
