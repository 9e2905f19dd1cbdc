"""The profiles' rules that depend on the machine, as pure functions."""

from __future__ import annotations

import pytest

from autoresearch import profiles

ROWS_PER_STEP = profiles.PROFILES["cuda-large"].train["TOTAL_BATCH_SIZE"] // 2048  # 256 rows of 2048 tokens


@pytest.mark.parametrize("memory_gb, batch", [(80, 128), (40, 64), (24, 32), (141, 128), (16, 32), (12, 16)])
def test_the_cuda_memory_rule_fits_the_device_batch_to_the_card(memory_gb, batch):
    rows = profiles.cuda_device_batch(memory_gb)
    assert rows == batch
    assert ROWS_PER_STEP % rows == 0  # train.py accumulates the rest of a step exactly
    # the estimate of the reference run's peak (45.1 GB at 128 rows) fits the card with room
    assert profiles.GB_FIXED + rows * profiles.GB_PER_ROW <= profiles.MEMORY_USABLE * memory_gb


def test_the_rule_matches_the_reference_run_and_the_profiles():
    # 128 rows: the reference's measured peak, 45.1 GB, within a few percent
    assert profiles.GB_FIXED + 128 * profiles.GB_PER_ROW == pytest.approx(45.06, rel=0.05)
    assert profiles.cuda_device_batch(80) == profiles.PROFILES["cuda-large"].train["DEVICE_BATCH_SIZE"]
    assert profiles.cuda_device_batch(24) == profiles.PROFILES["cuda"].train["DEVICE_BATCH_SIZE"]
    steps = {gb: ROWS_PER_STEP // profiles.cuda_device_batch(gb) for gb in (80, 40, 24)}
    assert steps == {80: 2, 40: 4, 24: 8}  # accumulation steps per optimizer step


def test_init_on_a_machine_without_cuda_keeps_the_profiles_batch(monkeypatch):
    from autoresearch.workspace import render_llm

    monkeypatch.setattr(profiles, "gpu_memory_gb", lambda: None)
    text = render_llm(profiles.PROFILES["cuda"], "climbmix", None)["train.py"]
    assert "DEVICE_BATCH_SIZE = 32 " in text
    monkeypatch.setattr(profiles, "gpu_memory_gb", lambda: 42.5)  # an A100 of 40 GB
    text = render_llm(profiles.PROFILES["cuda-large"], "climbmix", None)["train.py"]
    assert "DEVICE_BATCH_SIZE = 64 " in text
