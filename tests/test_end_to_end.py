"""init + prepare + python train.py on the CPU, for real, with a budget of seconds."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from autoresearch import pins

SUMMARY = ("val_bpb", "training_seconds", "total_seconds", "startup_seconds", "peak_vram_mb",
           "mfu_percent", "total_tokens_M", "num_steps", "num_params_M", "depth")


@pytest.mark.heavy
def test_init_prepare_train_prints_a_finite_val_bpb_that_beats_uniform(tmp_path, data_cache):
    ws = tmp_path / "ws"
    run = lambda *a, **kw: subprocess.run(a, capture_output=True, text=True, **kw)
    r = run(sys.executable, "-m", "autoresearch", "init", str(ws), "--profile", "cpu", "--budget", "4")
    assert r.returncode == 0, r.stderr
    r = run(sys.executable, "-m", "autoresearch", "prepare", cwd=ws)
    assert r.returncode == 0, r.stderr
    assert len(pins.read(ws).val_sha256) == 64  # prepare pinned the split it made
    r = run(sys.executable, "train.py", cwd=ws, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    tail = r.stdout.split("\n---\n")[-1]
    values = dict(re.findall(r"^(\w+):\s+(\S+)", tail, re.M))
    assert set(SUMMARY) <= set(values), tail
    bpb = float(values["val_bpb"])
    assert math.isfinite(bpb)
    # a model that knows nothing pays log2(VOCAB_SIZE) bits per token: over the validation
    # tokens' bytes, about 4.3 bits per byte on the Python test code pysource validates on
    uniform = run(sys.executable, "-c", "import numpy as np, prepare as p\n"
                  "t = np.memmap(p.PREPARED_DIR / 'val.bin', dtype=np.uint16, mode='r')\n"
                  "print(len(t) * np.log2(p.VOCAB_SIZE) / p.get_token_bytes().numpy()[t].sum())", cwd=ws)
    assert uniform.returncode == 0, uniform.stderr
    print("val_bpb", bpb, "uniform", uniform.stdout.strip())
    assert bpb < 0.9 * float(uniform.stdout), (bpb, uniform.stdout)
    assert float(values["training_seconds"]) >= 4.0
    assert re.search(r"step \d+ \| .*loss [\d.]+ .*remaining \d+s", r.stdout)
    # nothing the run wrote is tracked: the tree stays clean
    assert subprocess.run(["git", "status", "--porcelain"], cwd=ws, capture_output=True, text=True).stdout == ""
