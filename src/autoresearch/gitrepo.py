"""Git: every git call of the package goes through this module (and so through `proc.run`).

A research workspace is a git repository; a line of research is a branch
`autoresearch/<tag>` whose tip is the best code so far (the frontier). The engine commits
each candidate, then either keeps the commit or resets the branch to the frontier.

Paths below are relative to the repository root, with forward slashes, as git prints them.

The agent may write anything in the workspace, `.git/` included, so `git()` runs git in a
sealed setting: nothing in the repository or in the user's git config can make the engine's
own git calls run a command or read something other than the repository's objects.

- The environment: no GIT_* variable of ours reaches git (GIT_DIR, GIT_INDEX_FILE,
  GIT_CONFIG_PARAMETERS, GIT_EXTERNAL_DIFF ...) but the author and committer identity;
  no system config, no global config (GIT_CONFIG_GLOBAL=/dev/null), no system attributes;
  no replace refs, no graft file, no shallow file (what a commit holds is what git reads);
  no terminal prompt, pager or editor. The repository is named explicitly (--git-dir and
  --work-tree), so `core.worktree` cannot send a reset or a clean to another folder.
- Settings that win over every config file (GIT_CONFIG_COUNT/KEY/VALUE: the same standing
  as `git -c`, and names holding "=" are fine): `_SEALED` below, each with its reason; hooks
  off (core.hooksPath=/dev/null: post-commit and reference-transaction too, which
  --no-verify does not stop), no fsmonitor, no untracked cache, no attributes file, no
  external diff, no signing or signature check, no transport at all, no automatic gc.
- Drivers: filters, diff drivers and merge drivers have names of the repository's choosing,
  so `.git/config` (and config.worktree, and every file they include, whatever the
  includeIf condition) is read with git's own parser, without includes, and each
  filter.<name>, diff.<name> and merge.<name> found gets empty commands (an empty command is
  never run). Read again only when one of those files changed (inode, size, mtime, ctime).
  `.git/info/attributes` is removed before each call; `.gitattributes` in the tree may name
  drivers, which then do nothing.
- Identity and excludes come from the user's own config (system and global), read once
  per process outside any repository; the workspace's config is not asked for them.

Not covered:
- Attributes of the tree that run nothing still apply: end-of-line conversion, `ident`,
  working-tree-encoding (git 2.39 has no way to ignore a tree's .gitattributes). export_tree
  checks each file against its blob id and writes the blob itself where they differ.
- Index state the agent leaves (assume-unchanged or skip-worktree bits, stat data forged in
  .git/index) can hide an edit of the working tree from `changes` and `commit_all`, and
  `reset_hard` does not undo a skip-worktree bit or forged stat data; .gitignore or
  .git/info/exclude can hide a new file (`clean_untracked` removes it). A run must therefore
  see `export_tree`'s copy of the commit, never the work tree.
- Git LFS or any other filter the user relies on is off as well: a workspace must not need one.
- What the agent may do with git itself: move branches and HEAD, write objects and reflogs.
  The engine checks the commits it resolves; this module only makes git read them faithfully.
- Denial of service: a FIFO, a lock file, a broken config or a corrupt object in `.git/` makes
  calls fail (one error line) or block (git() has no time limit).
- Races: the agent is assumed stopped while the engine calls git (a process left behind
  could change `.git/` between the check and the call).
- Submodules and nested repositories: their own config is not read, so status and diff do
  not look inside them (--ignore-submodules=dirty), reset never descends into them, and
  export_tree refuses them.
- A workspace whose `.git` is a file (a linked worktree) or has a `commondir` is followed as
  git follows it; an include path starting with %(prefix)/ is refused.
- File names that are not UTF-8 cannot be read back from git's output (one error line).
- Needs git 2.32 or later (GIT_CONFIG_GLOBAL).
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from autoresearch.errors import AutoresearchError
from autoresearch.proc import run

PREFIX = "autoresearch/"

# ---------------------------------------------------------------------------
# The sealed setting of every git call

_NULL = os.devnull
# settings that win over every config file, whatever the repository or the user set
_SEALED: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", _NULL),  # no hook at all, --no-verify or not (hooks are looked up in /dev/null/)
    ("core.fsmonitor", "false"),  # no file-system monitor command at each index refresh
    ("core.untrackedCache", "false"),  # no cached list of untracked files to trust
    ("core.attributesFile", _NULL),  # no attributes file named by a config
    ("core.pager", "cat"),  # never a pager (also --no-pager, and output is never a terminal)
    ("core.editor", ":"),  # ":" is git's no-op editor (also GIT_EDITOR)
    ("sequence.editor", ":"),
    ("diff.external", ""),  # an empty command is never run; the diff calls pass --no-ext-diff too
    ("diff.submodule", "short"),  # `show` never starts a diff inside a submodule
    ("status.submoduleSummary", "false"),
    ("submodule.recurse", "false"),  # reset and switch never descend into a submodule
    ("protocol.allow", "never"),  # no transport: core.sshCommand, remote helpers (ext::), credential
    #   helpers and the lazy fetch of a forged partial clone never start
    ("commit.gpgSign", "false"),  # no signing program
    ("tag.gpgSign", "false"),
    ("log.showSignature", "false"),  # `show` never runs a program to check a signature
    ("gpg.program", ""),
    ("gpg.openpgp.program", ""),
    ("gpg.x509.program", ""),
    ("gpg.ssh.program", ""),
    ("gpg.ssh.defaultKeyCommand", ""),
    ("core.useReplaceRefs", "false"),  # refs/replace/* cannot swap a blob's content (GIT_NO_REPLACE_OBJECTS too)
    ("gc.auto", "0"),  # no automatic gc: no pre-auto-gc hook, no background process, and no reflog
    ("maintenance.auto", "false"),  # expiry that would prune the discarded commits
    ("core.logAllRefUpdates", "true"),  # the reflog keeps discarded commits reachable
    ("core.sparseCheckout", "false"),  # no sparse patterns leaving tracked files out of a reset
    ("core.ignoreStat", "false"),  # a change is seen by its stat data: no assume-unchanged bit set
    ("core.trustctime", "true"),  # and by its ctime, which only root can set back (mtime anyone can)
    ("core.checkStat", "default"),
    ("core.autocrlf", "false"),  # committed bytes are the file's bytes (no line-ending rewrite)
    ("color.ui", "never"),
    ("color.diff", "never"),
    ("color.status", "never"),
)
# the commands of a driver the repository names (filter=x, diff=x, merge=x in attributes), emptied
_DRIVER_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "filter": (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")),
    "diff": (("command", ""), ("textconv", "")),
    "merge": (("driver", ""),),
    "hook": (("command", ""),),  # config-defined hooks of later gits
}
_KEPT_VARIABLES = frozenset({
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE",
})
_SEALED_VARIABLES = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": _NULL,  # the user's config is read once, for identity and excludes only
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_GRAFT_FILE": _NULL,  # .git/info/grafts would rewrite a commit's parents
    "GIT_SHALLOW_FILE": _NULL,  # .git/shallow would cut history (workspaces are never shallow clones)
    "GIT_EDITOR": ":",
    "GIT_SEQUENCE_EDITOR": ":",
    "GIT_PAGER": "cat",
}
_MAX_INCLUDE_DEPTH = 10  # git's own limit


def _inherited_environment(also: frozenset[str] = frozenset()) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEPT_VARIABLES or k in also}


@dataclass(frozen=True)
class _UserConfig:
    name: str
    email: str
    excludes: str  # the user's global excludes file (git's default place when unset)


def _user_config() -> _UserConfig:
    keys = ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM")
    return _read_user_config(tuple(os.environ.get(k) for k in keys))


@functools.lru_cache(maxsize=8)
def _read_user_config(_key: tuple) -> _UserConfig:
    """The user's system and global config, read outside any repository (GIT_DIR=/dev/null), so
    that no workspace's .git/config answers. Identity is taken from here and passed with -c
    rather than letting git read the global config itself: the global config may hold hooks,
    an fsmonitor, filters or a pager too, and only these three values are wanted from it."""
    env = _inherited_environment(frozenset({"GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM"}))
    env["GIT_DIR"] = _NULL
    result = run(["git", "config", "--includes", "-z", "--list"], check=False, env=env)
    found: dict[str, str] = {}
    for entry in result.stdout.split("\0") if result.returncode == 0 else []:
        key, _, value = entry.partition("\n")
        found[key.lower()] = value
    excludes = found.get("core.excludesfile", "")
    if not excludes:
        home = os.environ.get("HOME")
        xdg = os.environ.get("XDG_CONFIG_HOME") or (os.path.join(home, ".config") if home else "")
        excludes = os.path.join(xdg, "git", "ignore") if xdg else _NULL
    return _UserConfig(found.get("user.name", ""), found.get("user.email", ""), excludes)


def _signature(path: Path, what: str) -> tuple | None:
    """What tells a change of the regular file `path` (None: there is none); a FIFO or a device
    there is refused, since git would block on it or fail."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise AutoresearchError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise AutoresearchError(f"{what} {path} is not a regular file")
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_small(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read(65536).decode(errors="replace").strip()


def _git_dirs(root: Path, stamps: list) -> tuple[Path, Path] | None:
    """(git dir, common dir) of the repository at `root`, found as git finds them (a `.git`
    file, a `commondir` file), each file that decides it added to `stamps`."""
    dotgit = root / ".git"
    try:
        st = os.stat(dotgit)
    except OSError:
        stamps.append((dotgit, None))
        return None
    if stat.S_ISDIR(st.st_mode):
        stamps.append((dotgit, ("folder", st.st_ino, st.st_dev)))
        git_dir = dotgit
    else:
        stamps.append((dotgit, _signature(dotgit, "the git file")))
        text = _read_small(dotgit)
        if not text.startswith("gitdir:"):
            return None
        git_dir = root / text[len("gitdir:"):].strip()
    commondir = git_dir / "commondir"
    stamps.append((commondir, _signature(commondir, "the git file")))
    common = git_dir / _read_small(commondir) if stamps[-1][1] is not None else git_dir
    return git_dir, common


def _config_entries(path: Path) -> list[tuple[str, str]]:
    """(name, value) of each setting of one config file, by git's own parser, includes not followed."""
    env = {**_inherited_environment(), "GIT_DIR": _NULL, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": _NULL}
    result = run(["git", "config", "--file", str(path), "--no-includes", "-z", "--list"], check=False, env=env)
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        raise AutoresearchError(f"git cannot read {path}: {detail[-1] if detail else 'a broken config file'}")
    entries = []
    for entry in result.stdout.split("\0"):
        if entry:
            name, _, value = entry.partition("\n")
            entries.append((name, value))
    return entries


def _include_target(value: str, including: Path) -> Path | None:
    if not value:
        return None
    if value.startswith("%(prefix)/"):
        raise AutoresearchError(f"{including} includes {value}: a file of git's installation is refused")
    if value.startswith("~"):
        return Path(os.path.expanduser(value))
    target = Path(value)
    return target if target.is_absolute() else including.parent / target


@dataclass(frozen=True)
class _Scan:
    stamps: tuple  # ((path, signature), ...): what was read, to tell when to read again
    settings: tuple[tuple[str, str], ...]  # the drivers' emptied commands
    attributes: tuple[Path, ...]  # the info/attributes files to remove before each call


_SCANS: dict[str, _Scan] = {}


def _scan(root: Path) -> _Scan:
    """Read the repository's config files (and every file they include, whatever the condition)
    for the names of its filters, diff drivers and merge drivers."""
    stamps: list = []
    dirs = _git_dirs(root, stamps)
    if dirs is None:
        return _Scan(tuple(stamps), (), ())
    git_dir, common = dirs
    queue = [(common / "config", 0), (common / "config.worktree", 0), (git_dir / "config.worktree", 0)]
    seen: set[str] = set()
    names: set[tuple[str, str]] = set()
    while queue:
        path, depth = queue.pop(0)
        if os.path.abspath(path) in seen:
            continue
        seen.add(os.path.abspath(path))
        stamps.append((path, _signature(path, "the git config file")))
        if stamps[-1][1] is None:
            continue
        if depth > _MAX_INCLUDE_DEPTH:
            raise AutoresearchError(f"{path}: config files include each other deeper than {_MAX_INCLUDE_DEPTH}")
        for name, value in _config_entries(path):
            section, _, rest = name.partition(".")
            subsection, _, key = rest.rpartition(".")
            section = section.lower()
            if subsection and section in _DRIVER_KEYS:
                names.add((section, subsection))
            elif key.lower() == "path" and (section, bool(subsection)) in (("include", False), ("includeif", True)):
                target = _include_target(value, path)
                if target is not None:
                    queue.append((target, depth + 1))
    settings = tuple((f"{section}.{sub}.{key}", value)
                     for section, sub in sorted(names) for key, value in _DRIVER_KEYS[section])
    attributes = tuple(dict.fromkeys((common / "info" / "attributes", git_dir / "info" / "attributes")))
    return _Scan(tuple(stamps), settings, attributes)


def _unchanged(stamps: tuple) -> bool:
    try:
        for path, seen in stamps:
            if seen is not None and seen[0] == "folder":
                st = os.stat(path)
                if not stat.S_ISDIR(st.st_mode) or (st.st_ino, st.st_dev) != seen[1:]:
                    return False
            elif _signature(path, "") != seen:
                return False
    except (OSError, AutoresearchError):
        return False
    return True


def _repository_settings(root: Path) -> _Scan:
    key = str(root)
    scan = _SCANS.get(key)
    if scan is None or not _unchanged(scan.stamps):
        scan = _SCANS[key] = _scan(root)
    for path in scan.attributes:
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass  # a folder there holds no attributes
        except OSError as exc:
            raise AutoresearchError(f"cannot remove {path}: {exc.strerror or exc}") from exc
    return scan


def _environment(settings: Iterable[tuple[str, str]]) -> dict[str, str]:
    env = _inherited_environment()
    env.update(_SEALED_VARIABLES)
    count = 0
    for count, (key, value) in enumerate(settings, start=1):
        env[f"GIT_CONFIG_KEY_{count - 1}"] = key
        env[f"GIT_CONFIG_VALUE_{count - 1}"] = value
    env["GIT_CONFIG_COUNT"] = str(count)
    return env


def _git(root: Path, args: tuple[str, ...], *, check: bool = True, binary: bool = False,
         index: Path | None = None) -> subprocess.CompletedProcess:
    root = Path(os.path.abspath(root))
    scan = _repository_settings(root)
    settings = (*_SEALED, ("core.excludesFile", _user_config().excludes), *scan.settings)
    cmd = ["git", "--no-pager", f"--git-dir={root / '.git'}", f"--work-tree={root}", *args]
    env = _environment(settings)
    if index is not None:  # an index of our own: the repository's index and branch stay as they are
        env["GIT_INDEX_FILE"] = str(index)
    try:
        result = run(cmd, cwd=root, check=False, env=env, binary=binary)
    except UnicodeDecodeError as exc:
        raise AutoresearchError(f"git {args[0] if args else ''} printed a name that is not UTF-8 in {root}") from exc
    if check and result.returncode != 0:
        detail = result.stderr or result.stdout or ""
        lines = (detail.decode(errors="replace") if isinstance(detail, bytes) else detail).strip().splitlines()
        last = lines[-1] if lines else f"exit status {result.returncode}"
        raise AutoresearchError(f"git {' '.join(args)} failed: {last}")
    return result


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `git ARGS` on the repository at `root`, sealed (see the module's docstring)."""
    return _git(root, args, check=check)


def identity_args(root: Path) -> list[str]:
    """`-c user.name=… -c user.email=…` for a commit: the user's own identity (system and global
    config), else autoresearch's. The workspace's .git/config is not asked (the agent may write
    it); GIT_AUTHOR_* and GIT_COMMITTER_* in the environment still win, as git lets them."""
    user = _user_config()
    name, email = user.name or "autoresearch", user.email or "autoresearch@localhost"
    return ["-c", f"user.name={name}", "-c", f"user.email={email}"]


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
    (ignored files never; a submodule only when its commit moved). A rename lists both its old
    and its new path."""
    out = git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=dirty").stdout
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
    tracked = git(root, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", "--no-textconv",
                  "--ignore-submodules=dirty", commit, "--").stdout.split("\0")
    untracked = git(root, "ls-files", "--others", "--exclude-standard", "-z").stdout.split("\0")
    return sorted({p for p in (*tracked, *untracked) if p})


def changed_between(root: Path, old: str, new: str) -> list[str]:
    """Paths whose content differs between two commits."""
    out = git(root, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", old, new, "--").stdout
    return sorted(p for p in out.split("\0") if p)


def message(root: Path, commit: str) -> str:
    """A commit's message (its first paragraph, as one line)."""
    result = git(root, "log", "-1", "--format=%s", commit, "--", check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def commit_off_branch(root: Path, parent: str, message: str, *, exclude: Iterable[str] = (),
                      files: dict[str, str | None] | None = None) -> str:
    """A new commit on `parent` that no branch points at; HEAD, the branch and the index stay.
    Its content: the working tree's files (every change but `exclude`), or with `files` the
    parent's with those paths set to the given texts (None: deleted), the tree left alone."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-index-") as tmp:
        index = Path(tmp) / "index"
        _git(root, ("read-tree", parent), index=index)
        if files is None:
            pathspec = ("--", ".", *(f":(exclude,literal){p}" for p in exclude))
            _git(root, ("add", "-A", *pathspec), index=index)
        else:
            for n, (path, text) in enumerate(sorted(files.items())):
                if text is None:
                    _git(root, ("update-index", "--force-remove", "--", path), index=index)
                    continue
                blob = Path(tmp) / f"blob-{n}"
                blob.write_text(text)
                sha = git(root, "hash-object", "-w", "--no-filters", str(blob)).stdout.strip()
                _git(root, ("update-index", "--add", "--cacheinfo", f"100644,{sha},{path}"), index=index)
        tree = _git(root, ("write-tree",), index=index).stdout.strip()
    return git(root, *identity_args(root), "commit-tree", tree, "-p", parent, "-m", message).stdout.strip()


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
    result = git(root, "show", "--no-textconv", f"{commit}:{path}", check=False)
    return result.stdout if result.returncode == 0 else None


def merge_text(root: Path, ours: str, base: str, theirs: str) -> str | None:
    """Three-way merge of one file's text (`git merge-file`): `theirs` with the change from
    `base` to `ours` applied; None when the two conflict."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-merge-") as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_text(text)
            paths.append(str(path))
        result = git(root, "merge-file", "-p", *paths, check=False)
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
    result = git(root, "show", "--no-color", "--no-ext-diff", "--no-textconv", "--format=", f"--unified={context}",
                 commit, "--", *paths, check=False)
    return result.stdout if result.returncode == 0 else None


# ---------------------------------------------------------------------------
# A run's copy of a commit, and a clean work tree

_CHUNK = 1024 * 1024


def _committed_files(root: Path, commit: str, exclude: Iterable[str]) -> dict[str, tuple[str, bool]]:
    """path -> (blob id, executable) of every file of `commit` but the excluded ones; a symlink,
    a submodule or a path that could leave the folder is refused."""
    skip = [name.strip("/") for name in exclude if name.strip("/")]
    files: dict[str, tuple[str, bool]] = {}
    for item in git(root, "ls-tree", "-r", "-z", "--full-tree", commit).stdout.split("\0"):
        if not item:
            continue
        meta, _, path = item.partition("\t")
        mode, kind, sha = meta.split()
        if any(path == name or path.startswith(name + "/") for name in skip):
            continue
        if mode == "120000":
            raise AutoresearchError(f"{commit[:12]} holds a symbolic link, {path}: a run gets regular files only")
        if kind == "commit":
            raise AutoresearchError(f"{commit[:12]} holds a submodule, {path}: a run gets regular files only")
        if kind != "blob" or not mode.startswith("100"):
            raise AutoresearchError(f"{commit[:12]} holds {path} with mode {mode}: a run gets regular files only")
        if any(part in ("", ".", "..") or part.lower() == ".git" for part in path.split("/")):
            raise AutoresearchError(f"{commit[:12]} holds a path git would not check out: {path!r}")
        files[path] = (sha, bool(int(mode, 8) & 0o111))
    return files


def _new_file(dest: Path, path: str, executable: bool) -> int:
    """A new file at `dest/path` (its folders made), opened for writing; never through a link."""
    target = dest.joinpath(*path.split("/"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise AutoresearchError(f"cannot write {path} into {dest}: {exc.strerror or exc}") from exc
    os.fchmod(fd, 0o755 if executable else 0o644)
    return fd


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo | None, fd: int, sha: str) -> bool:
    """Copy a member of the archive into `fd`; whether its bytes are the blob `sha` (git archive
    applies attributes of the tree: end-of-line conversion, export-subst, export-ignore)."""
    if member is None:
        return False
    digest = hashlib.new("sha256" if len(sha) == 64 else "sha1", b"blob %d\0" % member.size, usedforsecurity=False)
    source = tar.extractfile(member)
    while source is not None and (chunk := source.read(_CHUNK)):
        digest.update(chunk)
        _write_all(fd, chunk)
    return digest.hexdigest() == sha


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def export_tree(root: Path, commit: str, dest: Path, exclude: Iterable[str] = ()) -> None:
    """Write the tracked files of `commit` into the empty folder `dest` (made when missing), for
    a sandboxed run that must see only committed code: regular files only, each byte for byte
    its blob, the executable bit kept, `exclude` (paths or folders: the agent's notes) left out.
    A symlink or a submodule in the commit is refused (AutoresearchError naming it); nothing
    is followed: each file is created new (O_EXCL, O_NOFOLLOW) in folders made here."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise AutoresearchError(f"{dest} is not empty: a run's copy of {commit[:12]} goes into an empty folder")
    files = _committed_files(root, commit, exclude)
    with tempfile.TemporaryDirectory(prefix="autoresearch-export-") as tmp:
        archive = Path(tmp) / "tree.tar"
        git(root, "archive", "--format=tar", "-o", str(archive), commit)
        with tarfile.open(archive, "r:") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isreg()}
            for path, (sha, executable) in files.items():
                fd = _new_file(dest, path, executable)
                try:
                    if not _copy_member(tar, members.get(path), fd, sha):
                        blob = _git(root, ("cat-file", "blob", sha), binary=True).stdout
                        os.ftruncate(fd, 0)
                        os.lseek(fd, 0, os.SEEK_SET)
                        _write_all(fd, blob)
                finally:
                    os.close(fd)


def _literal_pattern(path: str) -> str:
    """A gitignore pattern matching exactly `path` from the root of the tree."""
    escaped = "".join("\\" + c if c in "\\*?[" else c for c in path)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped


def clean_untracked(root: Path, keep: Iterable[str] = ()) -> list[str]:
    """Remove every untracked and every ignored file and folder of the work tree (`git clean
    -ffdx`: nested repositories too), except the paths in `keep` (files or folders, from the
    root: the engine's results.tsv, run.log, state folder, the notes). What .gitignore or
    .git/info/exclude hides goes too. A symlink is removed as a link, never followed.
    Returns what was removed, as git names it (for a message)."""
    excluded = [arg for name in keep if name.strip("/") for arg in ("-e", _literal_pattern(name.strip("/")))]
    out = git(root, "clean", "-f", "-f", "-d", "-x", *excluded).stdout
    return [ln[len("Removing "):] for ln in out.splitlines() if ln.startswith("Removing ")]
