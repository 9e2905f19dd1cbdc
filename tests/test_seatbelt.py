"""The macOS jail, as far as Linux can check it: the Seatbelt profile's text (its rules and
their order: the last matching rule wins) and the paths a run is given where binds are not
moved. Running the profile needs a Mac's sandbox-exec; `sandbox.detect()` starts one there
before trusting it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from autoresearch import gitrepo, pins, sandbox, seatbelt
from autoresearch.engine.runner import Stage, VAL_FILES
from support import fake_prepared_data, llm_like

SEATBELT = sandbox.Sandbox(sandbox.SEATBELT, program="/usr/bin/sandbox-exec")


def seatbelt_profile(jail: sandbox.Jail) -> str:
    """The profile `Sandbox.wrap` gives sandbox-exec for `jail`."""
    return seatbelt.profile(jail, sandbox.python_dirs(jail.hidden))


def rule_index(profile: str, pattern: str) -> int:
    lines = profile.splitlines()
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, f"no rule matches {pattern!r} in:\n{profile}"
    return found[-1]


def test_the_profile_hides_the_workspace_and_the_homes_and_allows_only_the_binds(tmp_path):
    workspace, engine, data = tmp_path / "ws", tmp_path / "engine", tmp_path / "data"
    for d in (workspace, engine, data, tmp_path / "work"):
        d.mkdir()
    (data / "train.bin").write_bytes(b"x")
    jail = sandbox.Jail(
        binds=(sandbox.Bind(tmp_path / "work", Path("/unused"), writable=True),
               sandbox.Bind(data / "train.bin", Path("/unused/train.bin"))),
        cwd=tmp_path / "work", hidden=(workspace, engine, data))
    profile = seatbelt_profile(jail)
    assert profile.startswith("(version 1)\n(deny default)\n")
    denied = rule_index(profile, r"^\(deny file-read\* ")
    assert f'(subpath "{workspace.resolve()}")' in profile.splitlines()[denied]
    assert f'(subpath "{engine.resolve()}")' in profile.splitlines()[denied]
    assert '(subpath "/Users")' in profile.splitlines()[denied]
    # the bound training file is allowed after the denial of its folder (last match wins) ...
    assert rule_index(profile, re.escape(f'(literal "{(data / "train.bin").resolve()}")')) > denied
    # ... and so is the writable scratch folder, for reads and writes; nothing else is writable
    writes = [line for line in profile.splitlines() if "file-write*" in line]
    assert any(f'(subpath "{(tmp_path / "work").resolve()}")' in line for line in writes)
    assert not any(str(data) in line or str(workspace) in line for line in writes)
    assert profile.splitlines()[-1] == "(deny network*)"
    assert rule_index(profile, r"^\(allow signal \(target same-sandbox\)\)$") >= 0


def test_a_path_with_quotes_cannot_break_out_of_its_string(tmp_path):
    odd = tmp_path / 'a" (allow default) "'
    odd.mkdir()
    profile = seatbelt_profile(sandbox.Jail(binds=(sandbox.Bind(odd, odd, writable=True),), cwd=odd))
    outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', profile)
    assert "(allow default)" not in outside_strings
    assert '\\" (allow default) \\"' in profile


def test_seatbelt_runs_the_command_with_its_profile_and_no_other_user():
    argv = SEATBELT.wrap(["python", "train.py"], sandbox.Jail(binds=(), cwd=Path("/")))
    assert argv[:2] == ["/usr/bin/sandbox-exec", "-p"] and argv[2].startswith("(version 1)") and argv[3:] == ["python", "train.py"]
    assert SEATBELT.on and not SEATBELT.remaps and SEATBELT.owner() is None
    with sandbox.UpSignal() as up:  # the jail reports that it is up before the command starts
        argv = SEATBELT.wrap(["python", "train.py"], sandbox.Jail(binds=(), cwd=Path("/")), up)
        assert argv[3] == sys.executable and argv[-3:] == [str(up.write_fd), "python", "train.py"]


def test_a_masked_folder_is_denied_after_the_python_installation_is_allowed(tmp_path):
    folder = Path(sandbox.python_dirs()[0]) / "test"
    profile = seatbelt_profile(sandbox.Jail(binds=(), cwd=Path("/"), masked=(folder,)))
    rules = profile.splitlines()
    deny = next(i for i, r in enumerate(rules) if r.startswith("(deny file-read*") and str(folder.resolve()) in r)
    allow = next(i for i, r in enumerate(rules) if r.startswith("(allow file-read* (subpath"))
    assert deny > allow  # the last matching rule wins


def test_where_binds_stay_put_the_run_gets_real_paths_and_a_temporary_folder_of_its_own(tmp_path):
    ws = llm_like(tmp_path / "ws")
    prepared = fake_prepared_data()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    stage = Stage.make(ws, gitrepo.head(ws.root), scratch, SEATBELT)
    trainer = stage.trainer_jail()
    assert trainer.cwd == stage.work and trainer.env["HOME"] == str(scratch / "home")
    assert trainer.env["TMPDIR"] == str(scratch / "tmp")
    assert any(b.source == scratch / "tmp" and b.writable for b in trainer.binds)
    bound = {b.source for b in trainer.binds}
    assert prepared / "train.bin" in bound and not any(prepared / n in bound for n in ("val.bin", "val.idx.npy"))
    assert ws.root in trainer.hidden and pins.home() in trainer.hidden
    evaluator = stage.evaluator_jail(scratch / "record.json")
    assert evaluator.env["TORCHINDUCTOR_CACHE_DIR"] == str(scratch / "evaluator-cache" / "inductor")
    assert all(prepared / n in {b.source for b in evaluator.binds} for n in VAL_FILES)
