"""The sealed setting of every git call (`gitrepo` makes the calls through `run_git`).

The agent may write anything in the workspace, `.git/` included, so `run_git` runs git in a
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
"""

from __future__ import annotations

import functools
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from autoresearch.errors import AutoresearchError
from autoresearch.proc import run

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
class UserConfig:
    name: str
    email: str
    excludes: str  # the user's global excludes file (git's default place when unset)


def user_config() -> UserConfig:
    """The user's identity and excludes file, from their system and global config (read once)."""
    keys = ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM")
    return _read_user_config(tuple(os.environ.get(k) for k in keys))


@functools.lru_cache(maxsize=8)
def _read_user_config(_key: tuple) -> UserConfig:
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
    return UserConfig(found.get("user.name", ""), found.get("user.email", ""), excludes)


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


def run_git(root: Path, args: tuple[str, ...], *, check: bool = True, binary: bool = False,
            index: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """`git ARGS` on the repository at `root`, sealed; with `index`, on that index file instead of
    the repository's (its index and branch stay as they are). A failure raises AutoresearchError
    when `check`."""
    root = Path(os.path.abspath(root))
    scan = _repository_settings(root)
    settings = (*_SEALED, ("core.excludesFile", user_config().excludes), *scan.settings)
    cmd = ["git", "--no-pager", f"--git-dir={root / '.git'}", f"--work-tree={root}", *args]
    env = _environment(settings)
    if index is not None:  # an index of our own: the repository's index and branch stay as they are
        env["GIT_INDEX_FILE"] = str(index)
    try:
        result = run(cmd, cwd=root, check=False, env=env, binary=binary, input=input)
    except UnicodeDecodeError as exc:
        raise AutoresearchError(f"git {args[0] if args else ''} printed a name that is not UTF-8 in {root}") from exc
    if check and result.returncode != 0:
        detail = result.stderr or result.stdout or ""
        lines = (detail.decode(errors="replace") if isinstance(detail, bytes) else detail).strip().splitlines()
        last = lines[-1] if lines else f"exit status {result.returncode}"
        raise AutoresearchError(f"git {' '.join(args)} failed: {last}")
    return result
