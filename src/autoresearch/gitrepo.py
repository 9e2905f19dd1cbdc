# long module: every git call of the package is made here (one module for git, docs/architecture.md)
"""Git: every git call of the package goes through here (sealed by `gitseal`, run by `proc.run`).

A research workspace is a git repository; a line of research is a branch
`autoresearch/<tag>` whose tip is the best code so far (the frontier). The engine commits
each candidate, then either keeps the commit or resets the branch to the frontier.

Paths below are relative to the repository root, with forward slashes, as git prints them.

The agent may write anything in the workspace, `.git/` included, so every call runs git in
the sealed setting of `autoresearch.gitseal`: nothing in the repository or in the user's git
config can make the engine's own git calls run a command or read something other than the
repository's objects.

Not covered:
- Attributes of the tree that run nothing still apply: end-of-line conversion, `ident`,
  working-tree-encoding (git 2.39 has no way to ignore a tree's .gitattributes). export_tree
  checks each file against its blob id and writes the blob itself where they differ.
- Index state the agent leaves (assume-unchanged or skip-worktree bits, stat data forged in
  .git/index) can hide an edit of the working tree from `changes` and `commit_all`; so
  `changed_since` and `commit_off_branch` read the tree into an index of their own (what is
  checked is what is committed), and `reset_hard` starts from no index at all. .gitignore or
  .git/info/exclude can hide a new file from both (it is then in no commit; `clean_untracked`
  removes it). A run must see `export_tree`'s copy of the commit, never the work tree.
- Refs may be named like commit ids (a tag `1a2b3c4`), and git prefers a ref to an object of
  that name: `resolve` reads a name of hex digits as an object id only.
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

import contextlib
import hashlib
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable

from autoresearch.errors import AutoresearchError
from autoresearch.files import atomic_write, behind_a_link, real_folder
from autoresearch.gitseal import run_git, user_config

PREFIX = "autoresearch/"


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `git ARGS` on the repository at `root`, sealed (see autoresearch.gitseal)."""
    return run_git(root, args, check=check)


def identity_args(root: Path) -> list[str]:
    """`-c user.name=… -c user.email=…` for a commit: the user's own identity (system and global
    config), else autoresearch's. The workspace's .git/config is not asked (the agent may write
    it); GIT_AUTHOR_* and GIT_COMMITTER_* in the environment still win, as git lets them."""
    user = user_config()
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


_COMMIT_ID = re.compile(r"[0-9a-f]{4,40}")


def resolve(root: Path, rev: str) -> str | None:
    """The full sha of a commit, or None when `rev` names none. Hex digits (a row's commit) are
    an object id, never a ref of the same name, which the agent may have made."""
    if _COMMIT_ID.fullmatch(rev):
        return _commit_id(root, rev)
    result = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _commit_id(root: Path, prefix: str) -> str | None:
    """The one commit whose id starts with `prefix` (None: none, or more than one). A full id
    needs no lookup (git reads 40 hex digits as an id before any ref); a shorter one is listed
    with --disambiguate, which looks at objects only."""
    if len(prefix) == 40:
        return prefix if _is_commit(root, prefix) else None
    listed = git(root, "rev-parse", f"--disambiguate={prefix}", check=False).stdout.split()
    commits = [sha for sha in listed if len(sha) == 40 and _is_commit(root, sha)]
    return commits[0] if len(commits) == 1 else None


def current_branch(root: Path) -> str | None:
    """The checked-out branch, or None on a detached HEAD."""
    result = git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def branch_exists(root: Path, name: str) -> bool:
    return git(root, "show-ref", "--verify", "--quiet", f"refs/heads/{name}", check=False).returncode == 0


def create_branch(root: Path, name: str, start: str) -> None:
    git(root, "switch", "-q", "-c", name, start)


def ignore_locally(root: Path, name: str) -> None:
    """Have git ignore `name` in this clone only (.git/info/exclude), for an output of the engine's
    that a workspace made before it existed does not list in its .gitignore. Written only inside
    the workspace's own .git folder: a link planted at the file or at `info/` is replaced, never
    written through; a `.git` that is a file or names a common folder elsewhere is left alone."""
    if is_ignored(root, name):
        return
    gitdir = root / ".git"
    if gitdir.is_symlink() or not gitdir.is_dir() or os.path.lexists(gitdir / "commondir"):
        return
    path = real_folder(gitdir / "info") / "exclude"
    text = "" if path.is_symlink() or not path.is_file() else path.read_text(errors="replace")
    atomic_write(path, text + ("" if not text or text.endswith("\n") else "\n") + f"/{name}\n")


def set_branch(root: Path, name: str, commit: str) -> None:
    """Point branch `name` at `commit`, made or moved: the ref itself, never a branch it names
    (a symbolic ref the agent made there would move that one). The caller never names the
    branch checked out."""
    git(root, "update-ref", "--no-deref", "-m", "autoresearch", f"refs/heads/{name}", commit)


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
    """Paths whose content differs between `commit` and the working tree (untracked included,
    ignored files not), the tree read into an index of our own as `commit_off_branch` reads it:
    no bit or stat data the agent left in .git/index hides a change from this list that the
    commit would then hold."""
    with _scratch_index(root, commit) as index:
        out = run_git(root, ("diff", "--cached", "--name-only", "-z", "--no-renames", "--no-ext-diff",
                             "--no-textconv", commit, "--"), index=index).stdout
    return sorted(p for p in out.split("\0") if p)


@contextlib.contextmanager
def _scratch_index(root: Path, commit: str, exclude: Iterable[str] = ()):
    """An index of our own holding `commit` with every change of the working tree but `exclude`
    staged: each file of the commit and each new file git does not ignore, read and hashed
    (none of .git/index's state is used). update-index, not `add -A`, which asks each
    submodule for its status: a git run inside it, under its own config."""
    skip = set(exclude)
    with tempfile.TemporaryDirectory(prefix="autoresearch-index-") as tmp:
        index = Path(tmp) / "index"
        run_git(root, ("read-tree", commit), index=index)
        listed = (run_git(root, ("ls-files", "-z"), index=index).stdout
                  + run_git(root, ("ls-files", "-z", "--others", "--exclude-standard"), index=index).stdout)
        paths = [p for p in (p.rstrip("/") for p in listed.split("\0") if p)  # "sub/": a nested repository
                 if p not in skip and not any(p.startswith(f"{s}/") for s in skip)]
        gone = {p for p in paths if behind_a_link(root, p)}  # a folder became a link or a file: its files are gone
        here = [p for p in paths if p not in gone]
        # --replace: a file where the commit has a folder (or the other way round) takes its place
        for flags, names in ((("--add", "--remove", "--replace"), here), (("--force-remove",), sorted(gone))):
            if names:
                run_git(root, ("update-index", *flags, "-z", "--stdin"), index=index, input="\0".join(names) + "\0")
        yield index


def changed_between(root: Path, old: str, new: str) -> list[str]:
    """Paths whose content differs between two commits."""
    out = git(root, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", old, new, "--").stdout
    return sorted(p for p in out.split("\0") if p)


def altered_blobs(root: Path, old: str, new: str) -> list[str]:
    """Paths that `new` changed from `old` whose object does not hold what its id says. Git
    writes no object it already has, so a loose object the agent wrote under the id of a
    file's content (with other bytes in it) would go into the commit in its place."""
    out = git(root, "diff-tree", "-r", "-z", "--no-renames", old, new, "--").stdout.split("\0")
    altered = []
    for meta, path in zip(out[0::2], out[1::2]):
        fields = meta.split()
        if len(fields) == 5 and fields[1].startswith("100") and not _holds(root, fields[3]):
            altered.append(path)
    return altered


def _holds(root: Path, sha: str) -> bool:
    """Whether the blob `sha` hashes to its id."""
    data = run_git(root, ("cat-file", "blob", sha), binary=True, check=False).stdout or b""
    return _blob_id(data, sha) == sha


def _blob_hash(size: int, like: str):
    """The hash git names a blob of `size` bytes by (SHA-1, or SHA-256 for ids as long as `like`),
    its header fed; the bytes follow."""
    return hashlib.new("sha256" if len(like) == 64 else "sha1", b"blob %d\0" % size, usedforsecurity=False)


def _blob_id(data: bytes, like: str) -> str:
    digest = _blob_hash(len(data), like)
    digest.update(data)
    return digest.hexdigest()


def message(root: Path, commit: str) -> str:
    """A commit's message (its first paragraph, as one line)."""
    result = git(root, "log", "-1", "--format=%s", commit, "--", check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def commit_off_branch(root: Path, parent: str, message: str, *, exclude: Iterable[str] = (),
                      files: dict[str, str | None] | None = None) -> str:
    """A new commit on `parent` that no branch points at; HEAD, the branch and the index stay.
    Its content: the working tree's files (every change but `exclude`), or with `files` the
    parent's with those paths set to the given texts (None: deleted), the tree left alone."""
    if files is None:
        with _scratch_index(root, parent, exclude) as index:
            tree = run_git(root, ("write-tree",), index=index).stdout.strip()
        return git(root, *identity_args(root), "commit-tree", tree, "-p", parent, "-m", message).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="autoresearch-index-") as tmp:
        index = Path(tmp) / "index"
        run_git(root, ("read-tree", parent), index=index)
        for n, (path, text) in enumerate(sorted(files.items())):
            if text is None:
                run_git(root, ("update-index", "--force-remove", "--", path), index=index)
                continue
            blob = Path(tmp) / f"blob-{n}"
            blob.write_text(text)
            sha = git(root, "hash-object", "-w", "--no-filters", str(blob)).stdout.strip()
            run_git(root, ("update-index", "--add", "--cacheinfo", f"100644,{sha},{path}"), index=index)
        tree = run_git(root, ("write-tree",), index=index).stdout.strip()
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
    survive with their current content whatever `commit` holds (a link there is not followed).
    The index is removed first, so every tracked file is written again from `commit`: a
    skip-worktree bit or forged stat data would leave the agent's version in place.
    """
    saved: dict[str, bytes] = {}
    for name in keep:
        path = root / name
        if path.is_symlink():
            path.unlink()  # notes that are a link are no notes: it would stay, and be refused each time
        elif path.is_file():
            saved[name] = path.read_bytes()
    index = Path(git(root, "rev-parse", "--path-format=absolute", "--git-path", "index").stdout.strip())
    index.unlink(missing_ok=True)
    git(root, "reset", "-q", "--hard", commit)
    git(root, "clean", "-q", "-f", "-d", *(arg for name in keep for arg in ("-e", name)))
    for name, data in saved.items():
        path = root / name
        if path.is_symlink() or not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)


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
    return resolve(root, commit) is not None


def _is_commit(root: Path, rev: str) -> bool:
    return git(root, "cat-file", "-e", f"{rev}^{{commit}}", check=False).returncode == 0


def _object(root: Path, commit: str) -> str:
    """A row's commit id as git must read it: the full id of that object (a ref named like it
    is not asked); anything else as it is."""
    if _COMMIT_ID.fullmatch(commit) and len(commit) < 40:
        return _commit_id(root, commit) or "0" * 40  # no such commit: git says so
    return commit


def commit_patch(root: Path, commit: str) -> subprocess.CompletedProcess:
    """What a commit changed, as `git show` prints it for people: stat, then the patch."""
    return git(
        root, "-c", "core.quotepath=off", "show", "--no-color", "--no-ext-diff", "--no-textconv", "--stat", "--patch",
        "--format=commit %H%nDate:   %ad%n%n    %s%n", _object(root, commit), "--", check=False,
    )


def commit_diff(root: Path, commit: str, paths: Iterable[str], context: int = 2) -> str | None:
    """The diff a commit made to `paths` (no header); None when git does not know it."""
    result = git(root, "show", "--no-color", "--no-ext-diff", "--no-textconv", "--format=", f"--unified={context}",
                 _object(root, commit), "--", *paths, check=False)
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
    digest = _blob_hash(member.size, sha)
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
                        blob = run_git(root, ("cat-file", "blob", sha), binary=True).stdout
                        if _blob_id(blob, sha) != sha:
                            raise AutoresearchError(
                                f"{commit[:12]}: the object of {path} ({sha[:12]}) does not hold what its id says: "
                                f"a file under .git/objects was altered (`git fsck` names it)")
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
