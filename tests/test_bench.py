"""The benchmark scripts still run against the package as it is (tiny sizes: the figures
themselves come from full runs, see docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=BENCH.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_the_keep_rule_bench_runs_through_the_engine():
    out = bench("bench/keep_rule_engine.py", "--experiments", "4", "--only", "mixed")
    assert "| mixed: 2 nulls, 2 wins of 2 sigma |" in out and "runs per experiment" in out


def test_the_engine_overhead_bench_runs():
    out = bench("bench/engine_overhead.py", "--experiments", "2")
    assert "engine overhead, in-process" in out and "over 2 experiments" in out


@pytest.mark.slow
def test_the_early_stopping_bench_runs_both_arms():
    out = bench("bench/early_stop.py", "--experiments", "2", "--seconds", "1")
    assert "| off |" in out and "| on |" in out and "decided experiments per hour" in out
