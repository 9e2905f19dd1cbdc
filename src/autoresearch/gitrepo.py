"""Git: every git call of the package goes through this module (and so through `proc.run`).

A research workspace is a git repository; a line of research is a branch
`autoresearch/<tag>` whose tip is the best code so far (the frontier). The engine commits
each candidate, then either keeps the commit or resets the branch to the frontier.

Paths below are relative to the repository root, with forward slashes, as git prints them.
Not covered: submodules, and files git is told to ignore (they are never the engine's
business: results.tsv, run.log and the state folder are ignored on purpose).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterable

from autoresearch.proc import run

PREFIX = "autoresearch/"


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["git", *args], cwd=root, check=check)


def identity_args(root: Path) -> list[str]:
    """`-c user.name=… -c user.email=…` when git has no identity configured, so commits never fail."""
    args = []
    for key, default in (("user.name", "autoresearch"), ("user.email", "autoresearch@localhost")):
        if git(root, "config", key, check=False).returncode != 0:
            args += ["-c", f"{key}={default}"]
    return args


def init(root: Path, message: str) -> None:
    """A new repository on `main` with everything in `root` as its first commit."""
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, *identity_args(root), "commit", "-q", "-m", message)


def is_repo(root: Path) -> bool:
    return (Path(root) / ".git").exists()


def short_head(root: Path) -> str | None:
    """The short sha of HEAD; None without one."""
    result = git(root, "rev-parse", "--short", "HEAD", check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


def branch_label(root: Path) -> str | None:
    """The checked-out branch's name, "HEAD" when detached; None where git cannot say."""
    result = git(root, "rev-parse", "--abbrev-ref", "HEAD", check=False)
    return result.stdout.strip() or None if result.returncode == 0 else None


def head(root: Path) -> str:
    """The full sha of HEAD."""
    return git(root, "rev-parse", "HEAD").stdout.strip()


def resolve(root: Path, rev: str) -> str | None:
    """The full sha of a commit, or None when `rev` names none."""
    result = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def current_branch(root: Path) -> str | None:
    """The checked-out branch, or None on a detached HEAD."""
    result = git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def branch_exists(root: Path, name: str) -> bool:
    return git(root, "show-ref", "--verify", "--quiet", f"refs/heads/{name}", check=False).returncode == 0


def create_branch(root: Path, name: str, start: str) -> None:
    git(root, "switch", "-q", "-c", name, start)


def switch(root: Path, name: str) -> None:
    git(root, "switch", "-q", name)


def is_ancestor(root: Path, ancestor: str, descendant: str) -> bool:
    return git(root, "merge-base", "--is-ancestor", ancestor, descendant, check=False).returncode == 0


def parent(root: Path, commit: str) -> str | None:
    return resolve(root, f"{commit}^")


def _unquote(path: str) -> str:
    # with -z git prints raw paths; only strip a trailing slash of an untracked folder
    return path.rstrip("/")


def changes(root: Path) -> list[str]:
    """Paths that differ from HEAD in the working tree or index, untracked files included
    (ignored files never). A rename lists both its old and its new path."""
    out = git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all").stdout
    paths: list[str] = []
    items = out.split("\0")
    i = 0
    while i < len(items):
        entry = items[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        paths.append(_unquote(path))
        if code[0] in "RC" or code[1] in "RC":  # the next item is the original path
            if i < len(items) and items[i]:
                paths.append(_unquote(items[i]))
            i += 1
    return sorted(set(paths))


def changed_since(root: Path, commit: str) -> list[str]:
    """Paths whose content differs between `commit` and the working tree (untracked included)."""
    tracked = git(root, "diff", "--name-only", "-z", "--no-renames", commit).stdout.split("\0")
    untracked = git(root, "ls-files", "--others", "--exclude-standard", "-z").stdout.split("\0")
    return sorted({p for p in (*tracked, *untracked) if p})


def commit_all(root: Path, message: str, exclude: Iterable[str] = ()) -> str:
    """Stage every change except `exclude` (paths), commit, and return the new sha."""
    pathspec = ["--", ".", *(f":(exclude,literal){p}" for p in exclude)]
    git(root, "add", "-A", *pathspec)
    git(root, *identity_args(root), "commit", "-q", "--no-verify", "--allow-empty", "-m", message)
    return head(root)


def reset_hard(root: Path, commit: str, keep: Iterable[str] = ()) -> None:
    """Make the working tree exactly `commit`: tracked files reset, untracked ones removed.

    Ignored files stay (results, logs, the state folder). Files in `keep` (the agent's notes)
    survive with their current content whatever `commit` holds.
    """
    saved: dict[str, bytes] = {}
    for name in keep:
        path = root / name
        if path.is_file():
            saved[name] = path.read_bytes()
    git(root, "reset", "-q", "--hard", commit)
    git(root, "clean", "-q", "-f", "-d", *(arg for name in keep for arg in ("-e", name)))
    for name, data in saved.items():
        path = root / name
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def show(root: Path, commit: str, path: str) -> str | None:
    """The text of `path` at `commit`, or None when it does not exist there."""
    result = git(root, "show", f"{commit}:{path}", check=False)
    return result.stdout if result.returncode == 0 else None


def move_branch(root: Path, commit: str, *, keep_tree: bool = False) -> None:
    """Point the branch at `commit`, leaving the working tree alone: with `keep_tree` the index
    follows (`--mixed`, the tree's edits show as changes), else it stays (`--soft`, they stay staged)."""
    git(root, "reset", "-q", "--mixed" if keep_tree else "--soft", commit)


def tracked(root: Path) -> list[str]:
    """Every tracked path."""
    return [p for p in git(root, "ls-files", "-z").stdout.split("\0") if p]


def tree_listing(root: Path, commit: str, paths: Iterable[str]) -> str:
    """`git ls-tree -r` of `paths` at `commit`: modes, blob ids and names, one a line."""
    return git(root, "ls-tree", "-r", commit, "--", *paths).stdout


def is_ignored(root: Path, path: str) -> bool:
    return git(root, "check-ignore", "-q", "--", path, check=False).returncode == 0


def has_commit(root: Path, commit: str) -> bool:
    return git(root, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def commit_patch(root: Path, commit: str) -> subprocess.CompletedProcess:
    """What a commit changed, as `git show` prints it for people: stat, then the patch."""
    return git(
        root, "-c", "core.quotepath=off", "show", "--no-color", "--no-ext-diff", "--no-textconv", "--stat", "--patch",
        "--format=commit %H%nDate:   %ad%n%n    %s%n", commit, "--", check=False,
    )


def commit_diff(root: Path, commit: str, paths: Iterable[str], context: int = 2) -> str | None:
    """The diff a commit made to `paths` (no header); None when git does not know it."""
    result = git(root, "show", "--no-color", "--no-ext-diff", "--format=", f"--unified={context}", commit, "--",
                 *paths, check=False)
    return result.stdout if result.returncode == 0 else None
