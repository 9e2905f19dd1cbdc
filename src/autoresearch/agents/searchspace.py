"""The built-in agent's search space: the hyperparameters of a Python file and a range for each.

The hyperparameter block of a file is its ALL_CAPS literal constants above the first function
or class (`hyperparameters`). Each becomes one or more `Param`s (`derive`: a number, each
number of a short tuple, a True/False, a layer pattern such as "SSSL"), with a range derived
from its value at the start of the branch and a kind that says how it is searched: on a log
scale (rates), as the exponent of a power of two (batch sizes), as 1 - value (a momentum
close to 1), as a small integer, a fraction, or a choice. A `Param` converts between the
file's values and the search's ("internal") ones and takes one step from a value.

Not covered: constants computed from others (only literals are found), and knobs whose
name gives no hint and whose value is a plain string (left alone).
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch import capsliterals
from autoresearch.errors import AutoresearchError

SKIP = re.compile(r"(^|_)SEED($|_)|^COMPILE$|^DEVICE$|^DTYPE$|^CPU_THREADS$")
PATTERN = re.compile(r"^[SL]+$")
PATTERNS = ["L", "SL", "SSL", "SSSL"]


@dataclass
class Param:
    """One searchable knob: `name` (NAME or NAME[i] for a tuple element) and its range.

    kind: log (float, log scale), float (linear), one_minus (a beta/momentum close to 1,
    searched as 1 - value on a log scale), int, int_log, pow2 (searched as the exponent),
    cat (choices), bool.
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: list = field(default_factory=list)
    start: Any = None  # the value at the start of the branch

    @property
    def constant(self) -> str:
        return self.name.split("[", 1)[0]

    @property
    def index(self) -> int | None:
        m = re.search(r"\[(\d+)\]$", self.name)
        return int(m.group(1)) if m else None

    # The search's ("internal") values and the file's.
    def to_internal(self, value: Any) -> Any:
        if self.kind in ("cat", "bool"):
            return value if value in self.choices else self.choices[0]
        if self.kind == "one_minus":
            x = 1.0 - float(value)
        elif self.kind == "pow2":
            x = math.log2(value) if value > 0 else self.low
        else:
            x = float(value)
        x = min(max(x, self.low), self.high)
        return int(round(x)) if self.kind in ("int", "int_log", "pow2") else x

    def from_internal(self, x: Any) -> Any:
        if self.kind in ("cat", "bool"):
            return x
        if self.kind == "one_minus":
            return round_sig(1.0 - float(x), 3, towards_one=True)
        if self.kind == "pow2":
            return 2 ** int(round(x))
        if self.kind in ("int", "int_log"):
            return int(round(x))
        return round_sig(float(x), 3)

    def span(self) -> float:
        if self.kind in ("cat", "bool"):
            return 1.0
        if self.kind in ("log", "one_minus") and self.low > 0:
            return math.log(self.high / self.low) or 1.0
        if self.kind == "int_log" and self.low > 0:
            return math.log(self.high / self.low) or 1.0
        return (self.high - self.low) or 1.0

    def draw(self, rng) -> Any:
        """A uniform draw from the range on the search's own scale (logarithmic for rates), as an
        internal value: from_internal makes it the file's."""
        if self.kind in ("cat", "bool"):
            return rng.choice(self.choices)
        if self.kind in ("log", "one_minus", "int_log") and self.low > 0:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        if self.kind in ("int", "pow2"):
            return rng.randint(int(self.low), int(self.high))
        return rng.uniform(self.low, self.high)

    def position(self, value: Any) -> float:
        """Where a file value lies in the range, 0 to 1 on the search's scale (a choice: its index)."""
        if self.kind in ("cat", "bool"):
            return float(self.choices.index(value)) if value in self.choices else -1.0
        x = self.to_internal(value)
        if self.kind in ("log", "one_minus", "int_log") and self.low > 0:
            return math.log(max(x, self.low) / self.low) / self.span()
        return (x - self.low) / self.span()

    def at(self, position: float) -> Any:
        """The file value at a position in the range (position's inverse, clipped to the range)."""
        if self.kind in ("cat", "bool"):
            raise ValueError(f"{self.name} is a choice: it has no positions")
        position = min(max(position, 0.0), 1.0)
        if self.high <= self.low:
            return self.from_internal(self.low)
        if self.kind in ("log", "one_minus", "int_log") and self.low > 0:
            return self.from_internal(self.low * math.exp(position * self.span()))
        return self.from_internal(self.low + position * self.span())

    def distance(self, a: Any, b: Any) -> float:
        """How far apart two file values are, as a share of the range (different choices: 1)."""
        if self.kind in ("cat", "bool"):
            return 0.0 if a == b else 1.0
        return abs(self.position(a) - self.position(b))

    def step(self, value: Any, direction: int) -> Any | None:
        """The value one step from `value` (direction +1 or -1); None when at the edge."""
        if self.kind == "bool":
            return (not value) if direction > 0 else None
        if self.kind == "cat":
            others = [c for c in self.choices if c != value]
            if not others:
                return None
            i = self.choices.index(value) if value in self.choices else -1
            j = i + direction
            return self.choices[j] if 0 <= j < len(self.choices) else None
        x = self.to_internal(value)
        if self.kind == "log":
            new = x * (2.0 if direction > 0 else 0.5)
        elif self.kind == "one_minus":
            new = x * (0.5 if direction > 0 else 2.0)  # +1: closer to 1
        elif self.kind == "float":
            new = x + direction * (self.high - self.low) / 3
        elif self.kind == "int_log":
            new = x * 2 if direction > 0 else x / 2
        else:  # int, pow2 (exponent)
            new = x + direction
        if new < self.low - 1e-12 or new > self.high + 1e-12:
            clipped = min(max(new, self.low), self.high)
            if abs(clipped - x) < 1e-12:
                return None
            new = clipped
        out = self.from_internal(new)
        return None if out == value else out


def round_sig(x: float, digits: int = 3, towards_one: bool = False) -> float:
    """x with `digits` significant digits (of 1 - x when `towards_one`, e.g. 0.9875 stays apart from 0.99)."""
    if x == 0 or not math.isfinite(x):
        return x
    if towards_one and 0 < x < 1:
        return 1.0 - round_sig(1.0 - x, digits)
    return round(x, -int(math.floor(math.log10(abs(x)))) + digits - 1)


def derive(name: str, value: Any) -> list[Param]:
    """Search ranges for one constant from its current value (empty: not searched)."""
    if SKIP.search(name):
        return []
    if isinstance(value, bool):
        return [Param(name, "bool", choices=[True, False], start=value)]
    if isinstance(value, str):
        if PATTERN.match(value) and len(value) <= 8:
            choices = list(PATTERNS) + ([value] if value not in PATTERNS else [])
            return [Param(name, "cat", choices=choices, start=value)]
        return []
    if isinstance(value, (tuple, list)):
        out = []
        if len(value) <= 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            for i, v in enumerate(value):
                out += derive(f"{name}[{i}]", float(v) if isinstance(v, float) else v)
        return out
    upper = name.upper()
    if isinstance(value, int):
        if value < 0:
            return []
        if value == 0:
            return [Param(name, "int", 0, 8, start=0)]
        if "BATCH" in upper and value & (value - 1) == 0:
            e = int(math.log2(value))
            return [Param(name, "pow2", max(0, e - 2), e + 2, start=value)]
        if value >= 8 and value & (value - 1) == 0:
            e = int(math.log2(value))
            return [Param(name, "pow2", max(0, e - 1), e + 1, start=value)]
        if value <= 16:
            return [Param(name, "int", max(1, value - 2), value + 2, start=value)]
        return [Param(name, "int_log", max(1, value // 4), value * 4, start=value)]
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            return []
        if any(k in upper for k in ("BETA", "MOMENTUM")) and 0.5 <= value < 1:
            u = 1.0 - value
            return [Param(name, "one_minus", u / 3, min(0.5, u * 3), start=value)]
        if any(k in upper for k in ("LR", "LEARNING_RATE", "EPS", "DECAY")):
            if value == 0:
                return [Param(name, "float", 0.0, 0.2, start=value)]
            high = value * 4 if "DECAY" not in upper else min(1.0, value * 4)
            return [Param(name, "log", value / 4, max(high, value), start=value)]
        if 0 <= value <= 1:  # a share (a ratio above one, such as an MLP's, is a size: below)
            return [Param(name, "float", max(0.0, value - 0.3), min(1.0, value + 0.3), start=value)]
        if value > 1:
            return [Param(name, "log", value / 4, value * 4, start=value)]
    return []


def hyperparameters(text: str) -> dict[str, capsliterals.Constant]:
    """The ALL_CAPS literals above the first function or class (all of them if there is none)."""
    found = capsliterals.read_constants(text)
    tree = capsliterals.parse(text)
    first = next((n.lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))), None)
    block = {k: c for k, c in found.items() if first is None or c.line < first}
    return block or found


def values_of(params: list[Param], consts: dict[str, capsliterals.Constant]) -> dict[str, Any]:
    out = {}
    for p in params:
        c = consts.get(p.constant)
        if c is None:
            continue
        v = c.value
        if p.index is not None:
            if not isinstance(v, (tuple, list)) or p.index >= len(v):
                continue
            v = v[p.index]
        out[p.name] = v
    return out


def changed_constants(params: list[Param], consts: dict[str, capsliterals.Constant],
                      values: dict[str, Any]) -> dict[str, Any]:
    """The constants whose value `values` (by Param name) changes, a tuple's elements put back
    together, ready for capsliterals.write_constants."""
    out: dict[str, Any] = {}
    for p in params:
        if p.name not in values:
            continue
        if p.index is None:
            out[p.constant] = values[p.name]
        else:
            parts = list(out.get(p.constant, consts[p.constant].value))
            parts[p.index] = values[p.name]
            out[p.constant] = tuple(parts) if isinstance(consts[p.constant].value, tuple) else parts
    return {k: v for k, v in out.items() if v != consts[k].value}


def harness_seq_len(root: Path) -> int | None:
    """MAX_SEQ_LEN of the harness (prepare.py) in `root`; None without one."""
    try:
        value = capsliterals.read_constants((Path(root) / "prepare.py").read_text()).get("MAX_SEQ_LEN")
    except (OSError, AutoresearchError):
        return None
    return int(value.value) if value is not None and isinstance(value.value, int) else None


def fit_device_batch(values: dict[str, Any], seq_len: int | None) -> dict[str, Any]:
    """`values` with DEVICE_BATCH_SIZE halved until DEVICE_BATCH_SIZE * seq_len divides
    TOTAL_BATCH_SIZE (in tokens): a configuration train.py can run."""
    total, device = values.get("TOTAL_BATCH_SIZE"), values.get("DEVICE_BATCH_SIZE")
    if seq_len and isinstance(total, int) and isinstance(device, int) and device > 0:
        while device > 1 and (device * seq_len > total or total % (device * seq_len)):
            device //= 2
        values = dict(values, DEVICE_BATCH_SIZE=device)
    return values


def vector_key(values: dict[str, Any]) -> str:
    def norm(v):
        return round_sig(v, 6) if isinstance(v, float) else v

    return json.dumps({k: norm(v) for k, v in sorted(values.items())}, sort_keys=True, default=str)
