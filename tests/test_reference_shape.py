"""The `cuda-large` model at its full shape (depth 8, dim 512, sequence 2048, vocab 8192)
through the real hand-over and the real evaluator, trained in float32 and under bf16 autocast
the way train.py trains on CUDA: a shape or dtype problem of the GPU path fails here, on the
CPU. The work is bench/reference_shape.py's (its figures are in docs/benchmarks.md); this test
runs it at one row per batch and one training step and checks what it hands back."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# slow, not heavy: nothing here is timed, so it may run beside the timed runs, on one core
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    done = subprocess.run([sys.executable, "bench/reference_shape.py", "--batch", "1", "--steps", "1", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {r["dtype"]: r for r in map(json.loads, done.stdout.strip().splitlines())}


@pytest.mark.parametrize("dtype, tolerance", [("fp32", 1e-4), ("bf16", 1e-2)])
def test_the_reference_shape_is_handed_over_and_scored_as_the_trainer_scores_it(results, dtype, tolerance):
    r = results[dtype]
    assert r["shape"] == "depth 8, dim 512, sequence 2048, vocab 8192"
    assert math.isfinite(r["losses"][0]) and r["returned"] == "nan"  # under the engine evaluate_bpb hands over
    record = r["record"]
    assert "error" not in record, record
    # two rows of 2048 scored; the BOS tokens between documents are not counted (how many: the data's)
    assert record["batch_size"] == 1 and 2048 < record["tokens"] < 2 * 2048
    assert record["val_bpb"] == pytest.approx(r["by_hand_bpb"], abs=tolerance)
    assert r["handover_mb"] > 4 * r["params_M"]  # the weights in float32, whatever the training dtype
