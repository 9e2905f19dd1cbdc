"""The layers of docs/architecture.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "autoresearch"
# layer -> the layers it must not import (the base modules sit below all of these)
FORBIDDEN = {
    "research": {"*"},  # pure: nothing from the package outside research/
    "engine": {"agents", "views", "loop", "cli"},
    "agents": {"engine", "views", "loop", "cli"},
    "views": {"engine", "agents", "loop", "cli"},
    "loop": {"views", "cli"},
    "base": {"engine", "agents", "views", "loop", "cli"},
    "cli": set(),  # the command line (and `python -m autoresearch`) sits on top of everything
}
BASE_MAY_USE_RESEARCH = {"resultsfile", "state", "config", "workspace", "store", "runlog", "tracking"}


def layer_of(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if first == "__main__":
        return "cli"
    if first in ("research", "engine", "agents", "views", "loop", "cli"):
        return first
    return "base"


def imports(path: Path) -> list[tuple[str, int]]:
    """(first package part after autoresearch, line) of each import of the package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "autoresearch":
            parts = node.module.split(".")[1:]
            names = [parts[0]] if parts else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("autoresearch.")]
        found += [(n, node.lineno) for n in names]
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path):
    layer = layer_of(path)
    for name, line in imports(path):
        target = name if name in ("research", "engine", "agents", "views", "loop", "cli") else "base"
        if target == layer or name in ("errors", "__version__"):
            continue
        where = f"{path.relative_to(PACKAGE)}:{line} imports autoresearch.{name}"
        if layer == "research":
            pytest.fail(f"{where}: research/ imports nothing else from the package")
        assert target not in FORBIDDEN[layer], f"{where}: the {layer} layer may not import {target}"
        if layer == "base" and target == "research":
            assert path.relative_to(PACKAGE).parts[0].removesuffix(".py") in BASE_MAY_USE_RESEARCH, f"{where}: only the files' and records' modules use research/"


def test_nothing_calls_another_modules_private_names():
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        # the names this file binds to the package's modules and objects (the standard library's
        # own private names, os._exit, are not the package's business)
        ours = {a.asname or a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in node.names if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autoresearch")
                or isinstance(node, ast.Import) and a.name.startswith("autoresearch")}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autoresearch"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{path.relative_to(PACKAGE)}:{node.lineno} imports {private}"
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in ours):
                pytest.fail(f"{path.relative_to(PACKAGE)}:{node.lineno} uses {node.value.id}.{node.attr}")


def test_every_git_call_goes_through_the_git_module():
    for path in SOURCES:
        if path.name in ("gitrepo.py", "gitseal.py"):  # the calls, and the sealed setting they run in
            continue
        text = path.read_text()
        assert '"git"' not in text and "'git'" not in text, f"{path.relative_to(PACKAGE)} runs git itself"


def test_every_process_is_started_by_the_process_module():
    for path in SOURCES:
        if path.name == "proc.py":
            continue
        text = path.read_text()
        for call in ("subprocess.Popen(", "subprocess.run(", "os.system(", "os.killpg("):
            assert call not in text, f"{path.relative_to(PACKAGE)} uses {call} outside proc.py"


MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


def long_functions(path: Path) -> list[str]:
    """The functions (and methods, nested ones too) of a module over MAX_FUNCTION_LINES lines,
    from the `def` line to the last, without a `# long: <why>` comment on the `def` line or
    the line above it."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        size = node.end_lineno - node.lineno + 1
        marked = any("# long: " in lines[i - 1] for i in (node.lineno - 1, node.lineno) if i >= 1)
        if size > MAX_FUNCTION_LINES and not marked:
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({size} lines)")
    return found


def long_module(path: Path) -> str | None:
    """The module, when it is over MAX_MODULE_LINES lines without a `# long module: <why>` line
    in its first 40."""
    lines = path.read_text().splitlines()
    if len(lines) > MAX_MODULE_LINES and not any("# long module: " in line for line in lines[:40]):
        return f"{path.relative_to(PACKAGE)} ({len(lines)} lines)"
    return None


def test_no_function_or_module_is_long_without_a_reason():
    """A function over 60 lines or a module over 500 says why (`# long: <why>` at its `def`,
    `# long module: <why>` near its top); otherwise it is split."""
    functions = [f for path in SOURCES for f in long_functions(path)]
    modules = [m for m in map(long_module, SOURCES) if m]
    assert not functions and not modules, (
        f"over {MAX_FUNCTION_LINES} lines: {', '.join(functions) or 'none'}; "
        f"modules over {MAX_MODULE_LINES} lines: {', '.join(modules) or 'none'}")
