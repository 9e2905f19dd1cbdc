"""Small real workspaces for the agent tests: a blank-template git repository in a tmp dir."""

from __future__ import annotations

from pathlib import Path

from autoresearch.proc import run
from autoresearch.gitrepo import identity_args
from autoresearch.workspace import Workspace, init_workspace

SCORE = """\
# A tiny experiment: the score is how far LR is from 0.1 (lower is better).
LR = 0.5
WIDTH = 4


def score(lr, width):
    return abs(lr - 0.1) + 1.0 + 0.0 * width


print(f"score: {score(LR, WIDTH):.6f}")
"""


def blank(tmp: Path, *, editable=("score.py",), text: str = SCORE, direction: str = "lower") -> Workspace:
    """A committed workspace whose editable score.py prints `score: X`."""
    ws = init_workspace(tmp / "ws", template="blank", command="python score.py", metric="score",
                        editable=tuple(editable), direction=direction, budget=5)
    (ws.root / editable[0]).write_text(text)
    (ws.root / "program.md").write_text("# Research brief\n\nMake the score as low as you can by tuning LR.\n")
    commit(ws, "the experiment")
    return ws


def commit(ws: Workspace, message: str) -> str:
    run(["git", "add", "-A"], cwd=ws.root)
    run(["git", *identity_args(ws.root), "commit", "-q", "-m", message], cwd=ws.root)
    return run(["git", "rev-parse", "HEAD"], cwd=ws.root).stdout.strip()


def dirty(ws: Workspace) -> list[str]:
    """Paths git sees as changed or new (ignored files excluded)."""
    out = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ws.root).stdout
    return sorted(line[3:] for line in out.splitlines())
