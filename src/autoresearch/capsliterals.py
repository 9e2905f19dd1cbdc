"""Read and rewrite the ALL_CAPS constants of a Python file, in place.

Used by `init` (to freeze a profile's values into the templates) and by the built-in
proposer (to write a new hyperparameter value back). Only module-level assignments of a
single ALL_CAPS name to a literal are touched: numbers, booleans, strings, None, tuples
and lists of those, and simple arithmetic such as ``2**19`` or ``40 * 2**19``. Anything
else (calls, names, comprehensions) is left alone and not reported. Formatting,
comments and all other lines are kept byte for byte.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from dataclasses import dataclass
from typing import Any

from autoresearch.errors import AutoresearchError

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}


@dataclass(frozen=True)
class Constant:
    name: str
    value: Any
    source: str  # the literal as written, e.g. "2**19"
    line: int  # 1-based
    col: int  # 0-based start of the literal
    end_col: int  # 0-based end of the literal (same line only)


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            return _BINOPS[type(node.op)](left, right)
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_evaluate(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    raise ValueError("not a literal")


@functools.lru_cache(maxsize=4)  # a proposal reads two or three texts; trees of big files are big
def parse(text: str) -> ast.Module:
    """The module's syntax tree, for reading only. Cached: the built-in proposer reads the same
    train.py several times a proposal, and parsing it is most of a proposal's time."""
    return ast.parse(text)


def read_constants(text: str) -> dict[str, Constant]:
    """The ALL_CAPS literal constants of a module, by name, in file order."""
    try:
        tree = parse(text)
    except SyntaxError as exc:
        raise AutoresearchError(f"cannot parse constants: line {exc.lineno}: {exc.msg}") from exc
    lines = text.splitlines()
    found: dict[str, Constant] = {}
    for node in tree.body:
        if not (isinstance(node, (ast.Assign, ast.AnnAssign))):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or not _NAME.match(targets[0].id):
            continue
        value_node = node.value
        if value_node is None or value_node.lineno != value_node.end_lineno:
            continue
        try:
            value = _evaluate(value_node)
        except (ValueError, ZeroDivisionError, OverflowError):
            continue
        line = lines[value_node.lineno - 1]
        # ast offsets are in UTF-8 bytes; convert to str indices
        raw = line.encode()
        col = len(raw[: value_node.col_offset].decode())
        end = len(raw[: value_node.end_col_offset].decode())
        found[targets[0].id] = Constant(targets[0].id, value, line[col:end], value_node.lineno, col, end)
    return found


def format_value(value: Any, like: str = "") -> str:
    """Python source for `value`; keeps a power-of-two spelling such as ``2**19`` when `like` used one."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        m = re.fullmatch(r"\s*(\d+)\s*\*\*\s*\d+\s*", like)
        if m and value > 0:
            base = int(m.group(1))
            exp, rest = 0, value
            while base > 1 and rest % base == 0:
                rest //= base
                exp += 1
            if rest == 1 and exp > 0:
                return f"{base}**{exp}"
        return str(value)
    if isinstance(value, float):
        text = f"{value:.6g}"
        if "e" not in text and "." not in text:
            text += ".0"
        return text
    if isinstance(value, str):
        quote = '"' if like.startswith('"') or not like else "'"
        return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote
    if isinstance(value, (tuple, list)):
        inner = ", ".join(format_value(v) for v in value)
        if isinstance(value, tuple):
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        return f"[{inner}]"
    raise AutoresearchError(f"cannot write a value of type {type(value).__name__}")


def write_constants(text: str, values: dict[str, Any]) -> str:
    """`text` with each named constant's literal replaced; unknown names are an error.

    The comment after the value keeps its column where the new literal leaves room.
    """
    constants = read_constants(text)
    missing = [n for n in values if n not in constants]
    if missing:
        raise AutoresearchError(f"no constant named {', '.join(missing)}")
    lines = text.splitlines(keepends=True)
    for name, value in values.items():
        c = constants[name]
        line = lines[c.line - 1]
        new = format_value(value, c.source)
        after = line[c.end_col :]
        # keep an aligned trailing comment aligned: eat spaces we grew into, pad where we shrank
        m = re.match(r"(\s*)(#.*)?", after)
        if m and m.group(2):
            pad = len(m.group(1)) - (len(new) - len(c.source))
            after = " " * max(1, pad) + after[m.end(1):]
        lines[c.line - 1] = line[: c.col] + new + after
    return "".join(lines)
