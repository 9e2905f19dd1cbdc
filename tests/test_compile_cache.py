"""Warm compiles without a cache an experiment could poison (the `compile_cache` setting).

Through the real Runner, its sandbox and torch.compile's Inductor caches on the CPU: a run's
program lists what it finds in its TORCHINDUCTOR_CACHE_DIR, compiles a function, and plants a
file of its own there. Only the frontier's re-runs (and later baseline runs) of the same commit
may find what that commit's first measured run left; a candidate's own runs, another commit's
runs and the runs after the first never write into what a later run reads.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace

import pytest

from autoresearch.engine.compilecache import CompileCache, copy_regular
from autoresearch.engine.guard import Guard
from autoresearch.engine.lifecycle import Pen
from autoresearch.engine.measure import Limits
from autoresearch.engine.runner import Runner
from autoresearch.store import Journal
from support import blank, commit, head

needs_compiler = pytest.mark.skipif(not shutil.which("g++") and not shutil.which("c++"),
                                reason="Inductor on the CPU needs a C++ compiler")

PROGRAM = '''import json, os, pathlib, time
cache = pathlib.Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
found = sorted(p.name for p in cache.rglob("*") if p.is_file()) if cache.exists() else []
import torch
torch.set_num_threads(1)
t0 = time.time()
torch.compile(lambda x: (x * 2.5).sin() + 1)(torch.ones(8))
cache.mkdir(parents=True, exist_ok=True)
(cache / "planted-by-{tag}").write_text("a run's own bytes")
print("CACHE " + json.dumps({{"found": found, "compile": time.time() - t0}}))
print("score: {score}")
'''


def run(ws, runner: Runner, sha: str, kind: str) -> dict:
    pen = Pen(ws.store, "test", Journal(branch="test", frontier=sha, kind=kind, description=kind, candidate=sha))
    m = runner.run(sha, pen, kind=kind, description=kind)
    pen.close()
    assert m.ok, m.reason
    line = next(x for x in runner.log_path.read_text().splitlines() if x.startswith("CACHE "))
    return json.loads(line[len("CACHE "):])


def without_torch(program: str) -> str:
    """The program without its compile: it still lists the cache and plants its file."""
    return "\n".join(x for x in program.splitlines() if "torch" not in x)


def planted(seen: dict) -> list[str]:
    return sorted(n for n in seen["found"] if n.startswith("planted-by-"))


@pytest.mark.slow  # not heavy: its program compiles on one thread, and nothing in it is timed
@needs_compiler
def test_only_the_frontiers_reruns_of_a_commit_read_what_its_first_run_left(tmp_path):
    ws = blank(tmp_path, PROGRAM.format(tag="A", score=1.0), budget=60)
    ws = ws.save(replace(ws.config, compile_cache=True))
    frontier = commit(ws, "compile cache on")
    runner = Runner(ws, Limits.of(ws.config), Guard(ws), stream=io.StringIO(), live=False)

    first = run(ws, runner, frontier, "baseline")
    assert first["found"] == []  # nothing kept before the commit's first measured run
    warm = run(ws, runner, frontier, "baseline")
    assert planted(warm) == ["planted-by-A"] and len(warm["found"]) > 1  # Inductor's own files too
    print(f"compile: cold {first['compile']:.2f} s, warm {warm['compile']:.2f} s")

    # the candidate plants a file without compiling: which files a run finds needs no compiler
    (ws.root / "score.py").write_text(without_torch(PROGRAM.format(tag="B", score=0.5)))
    candidate = commit(ws, "a candidate")
    assert run(ws, runner, candidate, "experiment")["found"] == []  # another commit's cache: never
    assert run(ws, runner, candidate, "confirm")["found"] == []  # its own first run's: never either
    again = run(ws, runner, frontier, "rerun")
    assert planted(again) == ["planted-by-A"]  # only what the first run left: later runs wrote nothing
    # the candidate, kept, is now the frontier: its re-runs read its own first run's cache, no other
    assert planted(run(ws, runner, candidate, "rerun")) == ["planted-by-B"]


def test_the_setting_off_keeps_nothing(tmp_path):
    # no compile needed to see what is kept: the program's files alone
    ws = blank(tmp_path, without_torch(PROGRAM.format(tag="A", score=1.0)), budget=60)
    sha = head(ws.root)
    runner = Runner(ws, Limits.of(ws.config), Guard(ws), stream=io.StringIO(), live=False)
    run(ws, runner, sha, "baseline")
    assert run(ws, runner, sha, "rerun")["found"] == []
    assert not CompileCache.of(ws.root).root.exists()


def test_only_regular_files_are_kept_and_never_past_the_limit(tmp_path):
    import os

    src = tmp_path / "run-cache"
    (src / "inductor" / "fxgraph").mkdir(parents=True)
    (src / "inductor" / "fxgraph" / "entry").write_bytes(b"x" * 100)
    os.mkfifo(src / "a-fifo")  # would hold a reader forever
    (src / "a-link").symlink_to("/etc/passwd")
    (src / "a-folder-link").symlink_to(tmp_path)
    assert copy_regular(src, tmp_path / "kept", owner=None) == 100
    assert sorted(str(p.relative_to(tmp_path / "kept")) for p in (tmp_path / "kept").rglob("*")) == [
        "inductor", "inductor/fxgraph", "inductor/fxgraph/entry"]
    assert copy_regular(src, tmp_path / "small", owner=None, limit=99) is None


def test_a_cache_of_many_empty_files_is_not_kept(tmp_path):
    """Empty files cost no bytes but an inode each: past MAX_ENTRIES the cache is not kept."""
    src = tmp_path / "run-cache"
    src.mkdir()
    for i in range(60):
        (src / f"empty-{i}").touch()
    assert copy_regular(src, tmp_path / "kept", owner=None, entries=100) == 0
    assert copy_regular(src, tmp_path / "not-kept", owner=None, entries=50) is None


def test_a_cache_too_large_for_the_free_disk_is_not_kept(tmp_path, monkeypatch):
    """The kept caches of KEEP commits together must leave the disk room for the research."""
    import collections

    from autoresearch.engine import compilecache

    run_cache = tmp_path / "run-cache"
    run_cache.mkdir()
    (run_cache / "kernel").write_bytes(b"x" * 4096)
    cache = CompileCache(tmp_path / "kept")
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(compilecache.shutil, "disk_usage", lambda _: usage(1 << 30, 0, 2 * compilecache.KEEP * 4000))
    assert not cache.keep("a" * 40, "baseline", run_cache)  # 4096 bytes > a sixteenth of 64,000 free
    monkeypatch.setattr(compilecache.shutil, "disk_usage", lambda _: usage(1 << 30, 0, 1 << 30))
    assert cache.keep("a" * 40, "baseline", run_cache)
