"""The suite's own scheduling (scheduling.py): under xdist, the heavy tests run on one worker,
the tests of an xdist_group on one worker, and the rest beside them. A pytest run of its own,
on two workers, over tests that write down which worker ran them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

TESTS = '''import os, time
from pathlib import Path
import pytest

def note(name):
    Path(name).write_text(os.environ["PYTEST_XDIST_WORKER"])

@pytest.mark.heavy
@pytest.mark.parametrize("i", range(3))
def test_heavy(i):
    time.sleep(0.5)
    note(f"heavy-{i}")

@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("i", range(2))
def test_grouped(i):
    time.sleep(0.2)
    note(f"grouped-{i}")

@pytest.mark.parametrize("i", range(6))
def test_plain(i):
    time.sleep(0.1)
    note(f"plain-{i}")
'''


def test_the_heavy_tests_run_on_one_worker_and_the_rest_beside_them(tmp_path):
    for name in ("conftest.py", "scheduling.py"):
        shutil.copy(HERE / name, tmp_path / name)
    (tmp_path / "test_some.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -n 2\nmarkers =\n    heavy: x\n    slow: x\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    worker = {p.name: p.read_text() for p in tmp_path.iterdir() if p.name.split("-")[0] in ("heavy", "grouped", "plain")}
    assert len(worker) == 11, worker
    assert len({worker[f"heavy-{i}"] for i in range(3)}) == 1, worker
    assert len({worker[f"grouped-{i}"] for i in range(2)}) == 1, worker
    # the heavy tests start at once on one worker: the plain ones go to the other meanwhile
    assert {worker[f"plain-{i}"] for i in range(6)} - {worker["heavy-0"]}, worker
