"""The engine's git calls cannot be turned against it by what the agent writes in the workspace,
`.git/` included: no hook, fsmonitor, filter, diff driver, signature program or included config
runs; replace refs, grafts, a shallow file, core.worktree and an inherited GIT_DIR change nothing
git reads; export_tree writes exactly the committed files; clean_untracked removes what git
hides. Real repositories in tmp_path; each planted program writes a marker file when it runs."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from autoresearch import gitrepo, gitseal
from autoresearch.errors import AutoresearchError

TRAIN = "LR = 0.5\n"
HOOKS = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "reference-transaction",
         "post-checkout", "post-index-change", "post-rewrite", "pre-auto-gc")


def raw(root: Path, *args: str, input: bytes | None = None) -> str:
    """Plain git, for planting things as the agent would."""
    r = subprocess.run(["git", *args], cwd=root, capture_output=True, input=input)
    assert r.returncode == 0, f"git {' '.join(args)}: {r.stderr.decode()}"
    return r.stdout.decode().strip()


@pytest.fixture
def root(tmp_path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(TRAIN)
    (ws / "prepare.py").write_text("DATA = 1\n")
    (ws / "run.sh").write_text("#!/bin/sh\necho run\n")
    (ws / "run.sh").chmod(0o755)
    (ws / ".gitignore").write_text("results.tsv\nrun.log\n.autoresearch/\n__pycache__/\n")
    gitrepo.init(ws, "init")
    return ws


@pytest.fixture
def markers(tmp_path) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    return folder


def program(markers: Path, name: str, body: str = "cat") -> Path:
    """An executable that leaves markers/NAME when it runs, then does `body`."""
    path = markers.parent / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'#!/bin/sh\necho ran >> "{markers / name}"\n{body}\n')
    path.chmod(0o755)
    return path


def ran(markers: Path) -> list[str]:
    return sorted(os.listdir(markers))


def exercise(root: Path) -> str:
    """The engine's git calls over one experiment: look, commit, compare, show, move, reset.
    The last one is a commit without --no-verify, as a careless caller of git() would make."""
    gitrepo.create_branch(root, "autoresearch/t", "HEAD")
    frontier = gitrepo.head(root)
    (root / "train.py").write_text("LR = 0.2\n")
    (root / "extra.py").write_text("X = 1\n")
    assert {"extra.py", "train.py"} <= set(gitrepo.changes(root))
    assert {"extra.py", "train.py"} <= set(gitrepo.changed_since(root, frontier))
    assert "train.py" in gitrepo.tracked(root)
    assert gitrepo.show(root, frontier, "train.py") == TRAIN
    candidate = gitrepo.commit_all(root, "candidate")
    assert "+LR = 0.2" in gitrepo.commit_patch(root, candidate).stdout
    assert "+LR = 0.2" in gitrepo.commit_diff(root, candidate, ["train.py"])
    gitrepo.move_branch(root, frontier, keep_tree=True)
    gitrepo.move_branch(root, candidate)
    gitrepo.reset_hard(root, frontier)
    assert (root / "train.py").read_text() == TRAIN
    gitrepo.git(root, *gitrepo.identity_args(root), "commit", "-q", "--allow-empty", "-m", "plain commit")
    return candidate


# ---------------------------------------------------------------- hooks and programs named by config


@pytest.mark.parametrize("hook", ["post-commit", "reference-transaction", "pre-commit", "post-checkout",
                                  "post-index-change"])
def test_no_hook_of_the_repository_runs(root, markers, hook):
    # post-commit and reference-transaction run even with --no-verify; pre-commit runs for a
    # commit made without it
    hooks = root / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    os.replace(program(markers, hook), hooks / hook)
    exercise(root)
    assert ran(markers) == []


def hooks_folder(markers: Path, tmp_path: Path) -> Path:
    """A folder outside the repository holding every hook, each leaving a marker when run."""
    folder = tmp_path / "agent-hooks"
    folder.mkdir()
    for hook in HOOKS:
        os.replace(program(markers, hook), folder / hook)
    return folder


def test_no_hook_of_a_hooks_folder_set_in_the_config_runs(root, markers, tmp_path):
    folder = hooks_folder(markers, tmp_path)
    raw(root, "config", "core.hooksPath", str(folder))
    exercise(root)
    assert ran(markers) == []


def test_fsmonitor_set_in_the_config_is_not_run(root, markers):
    raw(root, "config", "core.fsmonitor", str(program(markers, "fsmonitor", "exit 1")))
    exercise(root)
    assert ran(markers) == []


def test_include_path_in_the_config_setting_a_hooks_folder_and_a_filter_is_ignored(root, markers, tmp_path):
    folder = hooks_folder(markers, tmp_path)
    clean = program(markers, "clean", "cat >/dev/null; echo EVIL")
    (tmp_path / "evil.cfg").write_text(f'[core]\n\thooksPath = {folder}\n[filter "sneaky"]\n\tclean = {clean}\n')
    raw(root, "config", "include.path", "../../evil.cfg")  # relative to .git/config
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "attributes").write_text("*.py filter=sneaky\n")
    assert raw(root, "config", "--get", "core.hooksPath") == str(folder)  # git itself sees the include
    candidate = exercise(root)
    assert ran(markers) == []
    assert raw(root, "cat-file", "blob", f"{candidate}:extra.py") == "X = 1"


def test_include_if_of_the_config_is_followed_whatever_its_condition(root, markers, tmp_path):
    clean = program(markers, "clean", "cat >/dev/null; echo EVIL")
    (tmp_path / "evil.cfg").write_text(f'[filter "sneaky"]\n\tclean = {clean}\n\trequired = true\n')
    raw(root, "config", f"includeIf.gitdir:{root}/.path", str(tmp_path / "evil.cfg"))
    (root / ".gitattributes").write_text("*.py filter=sneaky\n")
    exercise(root)
    assert ran(markers) == []


def test_a_clean_filter_named_in_info_attributes_is_not_run_and_the_commit_holds_the_real_bytes(root, markers):
    raw(root, "config", "filter.evil.clean", str(program(markers, "clean", "cat >/dev/null; echo EVIL")))
    raw(root, "config", "filter.evil.smudge", str(program(markers, "smudge", "cat >/dev/null; echo EVIL")))
    raw(root, "config", "filter.evil.required", "true")
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "attributes").write_text("*.py filter=evil\n")
    candidate = exercise(root)
    assert ran(markers) == []
    assert raw(root, "cat-file", "blob", f"{candidate}:train.py") == "LR = 0.2"
    assert not (root / ".git" / "info" / "attributes").exists()


def test_a_filter_named_in_a_committed_gitattributes_is_not_run(root, markers):
    raw(root, "config", "filter.evil.clean", str(program(markers, "clean", "cat >/dev/null; echo EVIL")))
    raw(root, "config", "filter.evil.smudge", str(program(markers, "smudge", "cat >/dev/null; echo EVIL")))
    raw(root, "config", "filter.evil.process", str(program(markers, "process", "exit 1")))
    (root / ".gitattributes").write_text("*.py filter=evil\n")
    raw(root, "-c", "filter.evil.clean=", "-c", "filter.evil.process=", "add", ".gitattributes")
    raw(root, "-c", "filter.evil.clean=", "-c", "filter.evil.process=", "commit", "-qm", "attributes")
    candidate = exercise(root)
    assert ran(markers) == []
    assert raw(root, "cat-file", "blob", f"{candidate}:train.py") == "LR = 0.2"
    gitrepo.reset_hard(root, candidate)  # smudge on checkout
    assert (root / "train.py").read_text() == "LR = 0.2\n"
    assert ran(markers) == []


def test_a_filter_whose_name_holds_an_equals_sign_is_still_neutralised(root, markers):
    raw(root, "config", "filter.a=b.clean", str(program(markers, "clean", "cat >/dev/null; echo EVIL")))
    (root / ".gitattributes").write_text("*.py filter=a=b\n")
    candidate = exercise(root)
    assert ran(markers) == []
    assert raw(root, "cat-file", "blob", f"{candidate}:train.py") == "LR = 0.2"


def test_external_diff_and_diff_drivers_are_not_run_by_commit_patch_and_commit_diff(root, markers):
    raw(root, "config", "diff.external", str(program(markers, "external")))
    raw(root, "config", "diff.evil.command", str(program(markers, "command")))
    raw(root, "config", "diff.evil.textconv", str(program(markers, "textconv", 'echo EVIL; cat "$1"')))
    (root / ".gitattributes").write_text("*.py diff=evil\n")
    candidate = exercise(root)
    patch = gitrepo.commit_patch(root, candidate).stdout
    diff = gitrepo.commit_diff(root, candidate, ["train.py"])
    assert ran(markers) == []
    assert "EVIL" not in patch and "-LR = 0.5" in patch
    assert "EVIL" not in diff and "-LR = 0.5" in diff


def test_a_signature_check_program_is_not_run_by_commit_patch(root, markers):
    raw(root, "config", "log.showSignature", "true")
    raw(root, "config", "gpg.program", str(program(markers, "gpg", "exit 1")))
    tree, head = raw(root, "rev-parse", "HEAD^{tree}"), raw(root, "rev-parse", "HEAD")
    body = (f"tree {tree}\nparent {head}\nauthor a <a@b> 0 +0000\ncommitter a <a@b> 0 +0000\n"
            "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned\n")
    signed = raw(root, "hash-object", "-t", "commit", "-w", "--stdin", input=body.encode())
    assert gitrepo.commit_patch(root, signed).returncode == 0
    assert ran(markers) == []


def test_a_forged_partial_clone_starts_no_fetch_for_a_missing_object(root, markers, tmp_path):
    # git would fetch the missing object from the promisor remote, running its upload-pack command
    raw(root, "config", "core.repositoryformatversion", "1")
    raw(root, "config", "extensions.partialClone", "origin")
    raw(root, "config", "remote.origin.url", str(tmp_path))
    raw(root, "config", "remote.origin.promisor", "true")
    raw(root, "config", "remote.origin.uploadpack", str(program(markers, "upload-pack", "exit 1")))
    missing = "1234567890" * 4
    assert gitrepo.show(root, missing, "train.py") is None
    assert not gitrepo.has_commit(root, missing)
    assert ran(markers) == []


# ---------------------------------------------------------------- what git reads


def test_replace_refs_cannot_swap_what_a_commit_holds(root, tmp_path):
    frontier = gitrepo.head(root)
    evil = raw(root, "hash-object", "-w", "--stdin", input=b"LR = 99\n")
    raw(root, "replace", raw(root, "rev-parse", f"{frontier}:train.py"), evil)
    assert raw(root, "show", f"{frontier}:train.py") == "LR = 99"  # plain git is fooled
    assert gitrepo.show(root, frontier, "train.py") == TRAIN
    gitrepo.export_tree(root, frontier, tmp_path / "out")
    assert (tmp_path / "out" / "train.py").read_text() == TRAIN
    (root / "train.py").write_text("LR = 99\n")
    gitrepo.reset_hard(root, frontier)
    assert (root / "train.py").read_text() == TRAIN


def test_a_shallow_file_or_grafts_cannot_cut_history(root):
    first = gitrepo.head(root)
    (root / "train.py").write_text("LR = 0.2\n")
    second = gitrepo.commit_all(root, "second")
    (root / ".git" / "shallow").write_text(second + "\n")
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "grafts").write_text(second + "\n")
    assert gitrepo.parent(root, second) == first
    assert gitrepo.is_ancestor(root, first, second)


def test_core_worktree_in_the_config_cannot_send_a_reset_or_a_clean_elsewhere(root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me\n")
    raw(root, "config", "core.worktree", str(elsewhere))
    (root / "train.py").write_text("LR = 0.2\n")
    assert gitrepo.changes(root) == ["train.py"]
    gitrepo.reset_hard(root, gitrepo.head(root))
    gitrepo.clean_untracked(root)
    assert (root / "train.py").read_text() == TRAIN
    assert sorted(os.listdir(elsewhere)) == ["precious.txt"]


def test_git_variables_of_the_callers_environment_are_not_inherited(root, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "unrelated.txt").write_text("x\n")
    gitrepo.init(other, "other")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.hooksPath'='/nonexistent'")
    assert gitrepo.tracked(root) == [".gitignore", "prepare.py", "run.sh", "train.py"]


def test_status_diff_and_a_candidates_commit_do_not_look_inside_a_submodule_whose_config_names_a_filter(root, markers):
    sub = root / "sub"
    sub.mkdir()
    (sub / "f.py").write_text("x\n")
    (sub / ".gitattributes").write_text("*.py filter=evil\n")
    raw(sub, "init", "-q")
    raw(sub, "add", "-A")
    raw(sub, "commit", "-qm", "sub")
    raw(sub, "config", "filter.evil.clean", str(program(markers, "clean")))
    raw(root, "add", "sub")
    raw(root, "commit", "-qm", "a submodule")
    head = gitrepo.head(root)
    for call in (lambda: gitrepo.changes(root), lambda: gitrepo.changed_since(root, head),
                 lambda: gitrepo.commit_off_branch(root, head, "a candidate")):
        st = os.stat(sub / "f.py")
        os.utime(sub / "f.py", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # stat-dirty: git would hash it
        call()
    assert ran(markers) == []


def test_the_config_is_read_again_only_when_it_changed(root, markers, monkeypatch):
    calls = []
    real = gitseal._config_entries
    monkeypatch.setattr(gitseal, "_config_entries", lambda path: calls.append(path) or real(path))
    gitrepo.tracked(root)
    gitrepo.tracked(root)
    before = len(calls)
    raw(root, "config", "filter.late.clean", str(program(markers, "clean", "cat >/dev/null; echo EVIL")))
    (root / ".gitattributes").write_text("*.py filter=late\n")
    (root / "train.py").write_text("LR = 0.3\n")
    candidate = gitrepo.commit_all(root, "late filter")
    assert len(calls) == before + 1
    assert ran(markers) == []
    assert raw(root, "cat-file", "blob", f"{candidate}:train.py") == "LR = 0.3"


def test_a_config_include_of_a_fifo_is_refused_not_waited_on(root, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    raw(root, "config", "include.path", str(tmp_path / "pipe"))
    with pytest.raises(AutoresearchError, match="not a regular file"):
        gitrepo.tracked(root)


# ---------------------------------------------------------------- export_tree


def test_export_tree_writes_exactly_the_committed_files(root, tmp_path):
    (root / "notes.md").write_text("my notes\n")
    (root / "data").mkdir()
    (root / "data" / "blob.bin").write_bytes(bytes(range(256)) * 3)
    commit = gitrepo.commit_all(root, "files")
    (root / "train.py").write_text("LR = 0.9\n")  # uncommitted: not exported
    (root / "untracked.py").write_text("u\n")
    (root / "results.tsv").write_text("ignored\n")
    out = tmp_path / "out"
    out.mkdir()
    gitrepo.export_tree(root, commit, out, exclude=["notes.md"])
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert found == [".gitignore", "data/blob.bin", "prepare.py", "run.sh", "train.py"]
    assert (out / "train.py").read_text() == TRAIN
    assert (out / "data" / "blob.bin").read_bytes() == bytes(range(256)) * 3
    assert stat.S_IMODE(os.stat(out / "run.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "train.py").st_mode) == 0o644


def test_export_tree_writes_blob_bytes_whatever_the_tree_attributes_say(root, tmp_path):
    (root / ".gitattributes").write_text("train.py export-ignore\nprepare.py text eol=crlf\nrun.sh export-subst\n")
    (root / "run.sh").write_text("#!/bin/sh\necho $Format:%H$\n")
    commit = gitrepo.commit_all(root, "attributes")
    gitrepo.export_tree(root, commit, tmp_path / "out")
    assert (tmp_path / "out" / "train.py").read_bytes() == TRAIN.encode()
    assert (tmp_path / "out" / "prepare.py").read_bytes() == b"DATA = 1\n"
    assert (tmp_path / "out" / "run.sh").read_bytes() == b"#!/bin/sh\necho $Format:%H$\n"


def test_export_tree_refuses_a_committed_symlink(root, tmp_path):
    (root / "link.py").symlink_to("/etc/passwd")
    commit = gitrepo.commit_all(root, "a link")
    with pytest.raises(AutoresearchError, match="link.py") as caught:
        gitrepo.export_tree(root, commit, tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert not any((tmp_path / "out").iterdir())
    gitrepo.export_tree(root, commit, tmp_path / "out2", exclude=["link.py"])  # left out: fine


def test_export_tree_refuses_a_submodule(root, tmp_path):
    raw(root, "update-index", "--add", "--cacheinfo", f"160000,{gitrepo.head(root)},vendored")
    raw(root, "commit", "-qm", "a gitlink")
    with pytest.raises(AutoresearchError, match="vendored"):
        gitrepo.export_tree(root, gitrepo.head(root), tmp_path / "out")


def test_export_tree_refuses_a_folder_that_is_not_empty(root, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(AutoresearchError, match="not empty"):
        gitrepo.export_tree(root, gitrepo.head(root), tmp_path / "out")


# ---------------------------------------------------------------- clean_untracked


def test_clean_untracked_removes_ignored_and_hidden_files_and_keeps_the_engines(root, tmp_path):
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "prepare.cpython-311.pyc").write_bytes(b"\0bytecode")
    (root / "prepare").mkdir()
    (root / "prepare" / "__init__.py").write_text("DATA = 2\n")  # would shadow prepare.py
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("prepare/\n")
    assert gitrepo.changes(root) == []  # hidden from the engine's view
    (root / "results.tsv").write_text("rows\n")
    (root / "run.log").write_text("log\n")
    (root / ".autoresearch").mkdir()
    (root / ".autoresearch" / "state.json").write_text("{}\n")
    (root / "notes.md").write_text("notes\n")
    (root / "sub").mkdir()
    (root / "sub" / "results.tsv").write_text("not the engine's\n")
    (root / "train.py").write_text("LR = 0.7\n")  # tracked: left alone
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep\n")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    gitrepo.clean_untracked(root, keep=["results.tsv", "run.log", ".autoresearch/", "notes.md"])
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.relative_to(root).parts[0] != ".git")
    assert left == [".autoresearch", ".autoresearch/state.json", ".gitignore", "notes.md", "prepare.py",
                    "results.tsv", "run.log", "run.sh", "train.py"]
    assert (root / "train.py").read_text() == "LR = 0.7\n"
    assert (outside / "precious.txt").read_text() == "keep\n"


def test_a_ref_named_like_a_commit_id_is_not_what_that_id_reads(root):
    """Rows keep short commit ids; a tag or branch of the same name (git asks refs first) changes
    neither what `resolve` finds nor the patch and diff the views show for that id."""
    first = gitrepo.head(root)
    (root / "train.py").write_text("LR = 0.2\n")
    kept = gitrepo.commit_all(root, "kept")
    (root / "train.py").write_text("LR = 9.9\n")
    other = gitrepo.commit_all(root, "the agent's")
    raw(root, "tag", kept[:7], other)
    raw(root, "branch", first[:8], other)
    assert gitrepo.resolve(root, kept[:7]) == kept
    assert gitrepo.resolve(root, first[:8]) == first
    assert gitrepo.has_commit(root, kept[:7])
    assert "+LR = 0.2" in gitrepo.commit_patch(root, kept[:7]).stdout
    assert "+LR = 0.2" in gitrepo.commit_diff(root, kept[:7], ["train.py"])
    assert gitrepo.resolve(root, "HEAD") == other  # a name that is no id is read as git reads it
    assert gitrepo.resolve(root, "0123abc") is None and not gitrepo.has_commit(root, "0123abc")


@pytest.mark.parametrize("shape", ["a folder made a link", "a folder made a file", "a file made a folder"])
def test_what_is_checked_is_what_is_committed_whatever_shape_the_tree_takes(root, tmp_path, shape):
    """changed_since and commit_off_branch read the tree into an index of their own: each shape
    of edit is listed as the commit holds it, and none is an error."""
    (root / "lib").mkdir()
    (root / "lib" / "util.py").write_text("X = 1\n")
    raw(root, "add", "-A")
    raw(root, "commit", "-qm", "a folder")
    frontier = gitrepo.head(root)
    if shape == "a folder made a link":
        raw(root, "rm", "-rq", "--cached", "lib")
        (root / "lib" / "util.py").unlink()
        (root / "lib").rmdir()
        (root / "lib").symlink_to(tmp_path)
    elif shape == "a folder made a file":
        (root / "lib" / "util.py").unlink()
        (root / "lib").rmdir()
        (root / "lib").write_text("now a file\n")
    else:
        (root / "train.py").unlink()
        (root / "train.py").mkdir()
        (root / "train.py" / "inside.py").write_text("Y = 2\n")
    listed = gitrepo.changed_since(root, frontier)
    candidate = gitrepo.commit_off_branch(root, frontier, "a candidate")
    assert listed == gitrepo.changed_between(root, frontier, candidate)
    assert listed == {"a folder made a link": ["lib", "lib/util.py"], "a folder made a file": ["lib", "lib/util.py"],
                      "a file made a folder": ["train.py", "train.py/inside.py"]}[shape]


def plant_object(root: Path, content: bytes, instead: bytes) -> str:
    """Write, as a loose object under the id of `content`, an object that holds `instead`."""
    import hashlib
    import zlib

    sha = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    path = root / ".git" / "objects" / sha[:2] / sha[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(0o644)
    path.write_bytes(zlib.compress(b"blob %d\0" % len(instead) + instead))
    return sha


def test_an_object_planted_under_the_id_of_a_files_content_is_found_before_it_runs(root, tmp_path):
    """Git writes no object it already has: the commit of a 9-byte train.py would hold what the
    agent planted under that id. The candidate's altered objects are named, and a run's copy
    of a commit never takes an object's bytes that do not hash to its id."""
    frontier = gitrepo.head(root)
    plant_object(root, b"LR = 0.2\n", b"LR = 0.2\nWEIGHTS = '" + b"x" * 100_000 + b"'\n")
    (root / "train.py").write_text("LR = 0.2\n")
    assert gitrepo.changed_since(root, frontier) == ["train.py"]
    candidate = gitrepo.commit_off_branch(root, frontier, "a candidate")
    assert gitrepo.altered_blobs(root, frontier, candidate) == ["train.py"]
    with pytest.raises(AutoresearchError, match="does not hold what its id says"):
        gitrepo.export_tree(root, candidate, tmp_path / "run")
    (root / "train.py").write_text("LR = 0.3\n")  # an object written here is sound
    assert gitrepo.altered_blobs(root, frontier, gitrepo.commit_off_branch(root, frontier, "another")) == []


def test_a_branch_made_a_symbolic_ref_is_replaced_not_followed(root):
    """finalize points its branch with set_branch: a symbolic ref the agent left at that name
    (pointing at main) is replaced by a branch of its own; main does not move."""
    main = gitrepo.head(root)
    (root / "train.py").write_text("LR = 0.2\n")
    other = gitrepo.commit_all(root, "another")
    raw(root, "reset", "-q", "--hard", main)
    raw(root, "symbolic-ref", "refs/heads/autoresearch/t-final", f"refs/heads/{gitrepo.current_branch(root)}")
    gitrepo.set_branch(root, "autoresearch/t-final", other)
    assert subprocess.run(["git", "symbolic-ref", "-q", "refs/heads/autoresearch/t-final"], cwd=root).returncode != 0
    assert gitrepo.resolve(root, "refs/heads/autoresearch/t-final") == other and gitrepo.head(root) == main


def test_the_local_exclude_file_is_written_inside_the_workspaces_git_folder_only(root, tmp_path):
    """A link at .git/info sends no write elsewhere: the folder is made again in its place."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    info = root / ".git" / "info"
    for item in info.iterdir() if info.is_dir() else ():
        item.unlink()
    if info.is_dir():
        info.rmdir()
    info.symlink_to(elsewhere)
    gitrepo.ignore_locally(root, "finalize.md")
    assert list(elsewhere.iterdir()) == []
    assert not info.is_symlink() and (info / "exclude").read_text() == "/finalize.md\n"
    assert gitrepo.is_ignored(root, "finalize.md")
