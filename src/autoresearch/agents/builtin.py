"""The built-in proposer: hyperparameter search over train.py's ALL_CAPS constants. Offline.

It reads the hyperparameter block of the first editable Python file (the ALL_CAPS literal
constants above the first function or class), derives a search range for each from its
value at the start of the branch (`searchspace`), and writes new values back in place with the file's
formatting and comments untouched. It never changes code, only values, so it is the
AutoML baseline the language-model agents have to beat.

The search has two phases:

1. Coordinate steps from the frontier, most promising knobs first (learning rates, the
   warmdown, batch sizes, depth, ...): one parameter moved one step (x2 or /2 for rates and
   batch sizes, +-1 for small integers, +-0.2 for fractions, the next choice for a pattern);
   a kept step is followed by another in the same direction, a failed one by the opposite
   direction, then the next parameter. A pass over the knobs that kept a step is followed by
   another (up to MAX_PASSES): a kept change moves the frontier, and the steps that lost
   before it (learning rates at the old depth, say) may win from the new one.
2. Optuna's TPE (multivariate), fitted on every result so far (a crash counts as the worst
   value seen), proposes a full configuration; the proposal applies one to three of the
   parameters where it departs from the frontier, drawn at random, so that each experiment
   stays a small, readable change from the best code. (Taking the ones that depart most, as
   a share of their range, kept choosing the few coarse knobs, such as a device batch, whose
   every change is a large share, and never a learning rate.)

Nothing already run is proposed again. Shape invariants are kept: a device batch larger
than the total batch (in tokens, at the harness's MAX_SEQ_LEN) is halved until it fits.
The search state (the ranges, every trial and its result, the phase) lives in the
workspace's state folder, one file per branch, so a resumed loop goes on where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from autoresearch import capsliterals, gitrepo
from autoresearch.agents.base import Agent, Context, Proposal
from autoresearch.agents.searchspace import (Param, changed_constants, derive, fit_device_batch, harness_seq_len,
                                             hyperparameters, values_of, vector_key)
from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write
from autoresearch.research.history import History

STATE_VERSION = 1
PRIORITY = [
    "MATRIX_LR", "EMBEDDING_LR", "UNEMBEDDING_LR", "WARMDOWN_RATIO", "TOTAL_BATCH_SIZE", "DEPTH",
    "SCALAR_LR", "WEIGHT_DECAY", "DEVICE_BATCH_SIZE", "ASPECT_RATIO", "MUON_MOMENTUM_STEPS",
    "WINDOW_PATTERN", "WARMUP_RATIO", "FINAL_LR_FRAC", "MLP_RATIO", "HEAD_DIM",
]
TPE_STARTUP = 4
MAX_PASSES = 3  # passes of coordinate steps over the knobs, while a pass keeps a step


class BuiltinAgent(Agent):
    name = "builtin"
    description = "Offline hyperparameter search (coordinate steps, then Optuna TPE) over train.py's ALL_CAPS constants"

    def check(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("optuna") is None:
            return "optuna is not installed (pip install optuna)"
        return None

    # -- state ---------------------------------------------------------------

    def _state_path(self, ctx: Context) -> Path:
        branch = str(ctx.extra.get("branch") or "")
        if not branch:
            branch = gitrepo.current_branch(Path(ctx.root)) or "detached"
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", branch)
        return Path(ctx.state_dir) / "builtin" / f"{safe}.json"

    @staticmethod
    def _load(path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("version") == STATE_VERSION else None

    @staticmethod
    def _save(path: Path, state: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
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
            # coordinate steps over the knobs that usually matter most; TPE searches them all
            order = sorted(range(len(params)), key=lambda i: _priority(params[i].constant, i))
            if sum(params[i].constant in PRIORITY for i in order) >= 5:  # a train.py like ours
                order = [i for i in order if params[i].constant in PRIORITY]
            state = {"version": STATE_VERSION, "target": target, "params": [asdict(p) for p in params],
                     "order": [params[i].name for i in order], "trials": [], "pendings": [],
                     "coord": {"i": 0, "dir": 0, "flipped": False}}
        params = [Param(**p) for p in state["params"]]
        params = [p for p in params if p.constant in consts]
        if not params:
            raise AutoresearchError(f"the hyperparameters the search started with are gone from {target}")
        self._settle(state, context)
        frontier = values_of(params, consts)
        self._note_frontier(state, frontier, context)
        seq_len = self._seq_len(context)
        tried = {t["key"] for t in state["trials"]} | {p["key"] for p in state["pendings"]}  # in flight too
        tried.add(vector_key(frontier))

        change = self._coordinate(state, params, frontier, tried, seq_len)
        how = "step"
        if change is None:
            change = self._tpe(state, params, frontier, tried, context, seq_len)
            how = "tpe"
        if change is None:
            change = self._random(state, params, frontier, tried, seq_len)
            how = "random"
        if change is None:
            raise AutoresearchError("the search space is exhausted: every nearby configuration already ran")

        new_values = dict(frontier, **change)
        self._write(context, target, text, consts, params, new_values)
        changed = {k: v for k, v in new_values.items() if v != frontier.get(k)}
        description = self._describe(consts, params, frontier, new_values)
        state["pendings"].append({"values": new_values, "key": vector_key(new_values), "rows_before": len(context.rows),
                                  "how": how, "changed": sorted(changed), "description": description})
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

    @staticmethod
    def _seq_len(ctx: Context) -> int | None:
        return harness_seq_len(Path(ctx.root))

    # -- results -----------------------------------------------------------------

    @classmethod
    def _settle(cls, state: dict, ctx: Context) -> None:
        """Attach the outcome of earlier proposals (from the rows the engine wrote). With several
        workers (`run --workers N`) some are still in flight: they stay pending, and tried."""
        pendings = state.pop("pendings", None) or ([state["pending"]] if state.get("pending") else [])
        state.pop("pending", None)
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
        mine = [r for r in rows[start:] if r.kind in ("experiment", "confirm")
                and r.description == pending.get("description", r.description)]
        if not mine:
            return "waiting"  # in flight, or never ran (the loop stopped before the experiment)
        first = mine[0]
        if first.status == "interrupted" or first.cause not in ("", "code", "hopeless"):
            return "again"  # stopped, or failed by the machine or the engine (Row.cause): may be proposed again
        measured = [r.value for r in mine if r.measured]  # a run stopped early (hopeless) has no value
        trial = {"values": pending["values"], "key": pending["key"], "status": first.status,
                 "value": sum(measured) / len(measured) if measured else None,
                 "how": pending.get("how"), "changed": pending.get("changed", []),
                 "description": pending.get("description", "")}
        state["trials"].append(trial)
        coord = state.get("coord")
        if pending.get("how") == "step" and coord is not None:
            kept = first.status == "keep"
            coord["kept"] = bool(coord.get("kept")) or kept  # this pass kept a step: another pass follows
            if not kept:
                if not coord.get("flipped"):
                    coord["dir"], coord["flipped"] = -coord.get("dir", 1), True
                else:
                    coord.update(i=coord["i"] + 1, dir=0, flipped=False)
            # kept: keep going in the same direction on the same parameter
        return "settled"

    def _note_frontier(self, state: dict, frontier: dict, ctx: Context) -> None:
        """The frontier is a trial too (the baseline, or code some other agent or a human wrote)."""
        key = vector_key(frontier)
        if any(t["key"] == key for t in state["trials"]):
            return
        value = History(ctx.rows).frontier_value
        if value is not None:
            state["trials"].append({"values": frontier, "key": key, "status": "keep", "value": value,
                                    "how": "frontier", "changed": [], "description": "frontier"})

    # -- phase 1: coordinate steps -------------------------------------------------

    def _coordinate(self, state, params, frontier, tried, seq_len) -> dict | None:
        coord = state.get("coord")
        if coord is None:
            return None
        by_name = {p.name: p for p in params}
        order = [n for n in state["order"] if n in by_name and n in frontier]
        guard = 0
        while guard < 8 * len(order) + 8:
            guard += 1
            if coord["i"] >= len(order):
                if not coord.get("kept") or coord.get("pass", 1) >= MAX_PASSES:
                    break
                coord.update(i=0, dir=0, flipped=False, kept=False, **{"pass": coord.get("pass", 1) + 1})
            p = by_name[order[coord["i"]]]
            if coord.get("dir", 0) == 0:
                coord["dir"] = -1 if "BATCH" in p.constant else 1
            new = p.step(frontier[p.name], coord["dir"])
            if new is not None:
                change = self._fix_shapes(params, frontier, {p.name: new}, seq_len)
                if change and vector_key(dict(frontier, **change)) not in tried:
                    return change
            if not coord.get("flipped"):
                coord["dir"], coord["flipped"] = -coord["dir"], True
            else:
                coord.update(i=coord["i"] + 1, dir=0, flipped=False)
        state["coord"] = None  # done: TPE from here on
        return None

    # -- phase 2: TPE --------------------------------------------------------------

    def _tpe(self, state, params, frontier, tried, ctx: Context, seq_len) -> dict | None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        done = [t for t in state["trials"] if t.get("status") in ("keep", "discard", "crash")]
        if len(done) < 2:
            return None
        higher = ctx.direction == "higher"
        values = [t["value"] for t in done if t.get("value") is not None]
        if not values:
            return None
        worst = (min(values) - abs(min(values)) * 0.05 - 1e-9) if higher else (max(values) + abs(max(values)) * 0.05 + 1e-9)
        dists = {p.name: p.distribution() for p in params}
        seed = int(hashlib.sha256(f"{state['target']}:{len(state['trials'])}".encode()).hexdigest()[:8], 16)
        rng = random.Random(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=TPE_STARTUP,
                                                 warn_independent_sampling=False)
            study = optuna.create_study(direction="maximize" if higher else "minimize", sampler=sampler)
            for t in done:
                vals = t["values"]
                internal = {p.name: p.to_internal(vals.get(p.name, frontier.get(p.name, p.start))) for p in params}
                study.add_trial(optuna.trial.create_trial(
                    params=internal, distributions=dists,
                    value=t["value"] if t.get("value") is not None else worst,
                ))
            for _ in range(24):
                trial = study.ask(dists)
                suggestion = {p.name: p.from_internal(trial.params[p.name]) for p in params}
                study.tell(trial, state=optuna.trial.TrialState.FAIL)  # only a draw: not a result
                moved = [p for p in params if suggestion[p.name] != frontier.get(p.name)]
                if not moved:
                    continue
                k = min(len(moved), rng.choice((1, 1, 2, 2, 3)))
                change = {p.name: suggestion[p.name] for p in rng.sample(moved, k)}
                change = self._fix_shapes(params, frontier, change, seq_len)
                if change and vector_key(dict(frontier, **change)) not in tried:
                    return change
        return None

    def _random(self, state, params, frontier, tried, seq_len) -> dict | None:
        rng = random.Random(len(state["trials"]) * 7919 + 1)
        for _ in range(200):
            p = rng.choice(params)
            new = p.step(frontier[p.name], rng.choice((-1, 1))) if p.name in frontier else None
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


def _priority(name: str, index: int) -> tuple[int, int]:
    try:
        return (PRIORITY.index(name), index)
    except ValueError:
        return (len(PRIORITY), index)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return str(value)
