"""Hardware profiles: the constants frozen into a workspace's prepare.py and train.py at init.

Results compare only within a workspace, so a profile is chosen once, at `init`, and its
values are written into the files; nothing reads this module at training time.
"""

from __future__ import annotations

import os

from dataclasses import dataclass, field
from typing import Any

from autoresearch.errors import AutoresearchError


@dataclass(frozen=True)
class Profile:
    name: str
    dataset: str  # default dataset
    harness: dict[str, Any]  # constants written into prepare.py
    train: dict[str, Any] = field(default_factory=dict)  # constants written into train.py
    summary: str = ""

    @property
    def budget(self) -> int:
        return int(self.harness["TIME_BUDGET"])


PROFILES: dict[str, Profile] = {
    # The reference shape: one H100-class GPU, 5 minutes.
    "cuda-large": Profile(
        name="cuda-large",
        dataset="climbmix",
        summary="NVIDIA GPU with >= 40 GB: depth 8, sequence 2048, batch 2^19 tokens, 300 s",
        harness=dict(
            MAX_SEQ_LEN=2048, TIME_BUDGET=300, EVAL_TOKENS=40 * 2**19, VOCAB_SIZE=8192,
            NUM_TRAIN_SHARDS=10, MAX_TRAIN_CHARS=2_000_000_000, MAX_VAL_CHARS=200_000_000,
            TOKENIZER_TRAIN_CHARS=1_000_000_000,
        ),
        train=dict(DEPTH=8, DEVICE_BATCH_SIZE=128, TOTAL_BATCH_SIZE=2**19, WINDOW_PATTERN="SSSL"),
    ),
    # Smaller NVIDIA cards: the same model, gradient accumulation over smaller device batches.
    "cuda": Profile(
        name="cuda",
        dataset="climbmix",
        summary="NVIDIA GPU < 40 GB: the reference model with device batch 32 and accumulation, 300 s",
        harness=dict(
            MAX_SEQ_LEN=2048, TIME_BUDGET=300, EVAL_TOKENS=10 * 2**19, VOCAB_SIZE=8192,
            NUM_TRAIN_SHARDS=10, MAX_TRAIN_CHARS=2_000_000_000, MAX_VAL_CHARS=100_000_000,
            TOKENIZER_TRAIN_CHARS=1_000_000_000,
        ),
        train=dict(DEPTH=8, DEVICE_BATCH_SIZE=32, TOTAL_BATCH_SIZE=2**19, WINDOW_PATTERN="SSSL"),
    ),
    # Apple GPUs: shrink the problem, not the loop (short sequences, fewer layers, full windows).
    "mps": Profile(
        name="mps",
        dataset="tinystories",
        summary="Apple GPU: depth 4, sequence 256, batch 2^14 tokens, window 'L', 300 s",
        harness=dict(
            MAX_SEQ_LEN=256, TIME_BUDGET=300, EVAL_TOKENS=2**21, VOCAB_SIZE=4096,
            NUM_TRAIN_SHARDS=4, MAX_TRAIN_CHARS=400_000_000, MAX_VAL_CHARS=20_000_000,
            TOKENIZER_TRAIN_CHARS=100_000_000,
        ),
        train=dict(DEPTH=4, DEVICE_BATCH_SIZE=64, TOTAL_BATCH_SIZE=2**14, WINDOW_PATTERN="L"),
    ),
    # Two CPU cores, a first decision within three minutes of `autoresearch run`: sized by
    # measurement (docs/benchmarks.md). CPU_THREADS is set for the machine at init (cpu_threads).
    "cpu": Profile(
        name="cpu",
        dataset="pysource",
        summary="CPU: depth 2, width 128 (2 heads), sequence 256, batch 2^11 tokens, 20 s",
        harness=dict(
            MAX_SEQ_LEN=256, TIME_BUDGET=20, EVAL_TOKENS=2**17, VOCAB_SIZE=2048,
            NUM_TRAIN_SHARDS=1, MAX_TRAIN_CHARS=24_000_000, MAX_VAL_CHARS=2_000_000,
            TOKENIZER_TRAIN_CHARS=8_000_000,
        ),
        # small batches win here: many cheap steps beat few big ones (docs/benchmarks.md)
        train=dict(DEPTH=2, HEAD_DIM=64, DEVICE_BATCH_SIZE=8, TOTAL_BATCH_SIZE=2**11, WINDOW_PATTERN="L"),
    ),
}


# The memory rule of the CUDA profiles (sequence 2048, depth 8): the reference run peaked at
# 45.1 GB with device batch 128 on an H100 (docs/benchmarks.md's reference facts), about
# 0.34 GB of activations per row of 2048 tokens on top of about 1.5 GB of weights, gradients
# and optimizer state. A card gets the largest power-of-two device batch, at most 128, whose
# estimate fits in 90 % of its memory; train.py accumulates gradients over the rest of the 2^19
# tokens of a step. Not yet measured with this project's train.py on a GPU.
GB_PER_ROW = 0.34
GB_FIXED = 1.5
MEMORY_USABLE = 0.9


def cuda_device_batch(memory_gb: float, most: int = 128) -> int:
    """DEVICE_BATCH_SIZE for a CUDA card with `memory_gb` of memory at the reference shape."""
    fits = (memory_gb * MEMORY_USABLE - GB_FIXED) / GB_PER_ROW
    rows = most
    while rows > 1 and rows > fits:
        rows //= 2
    return rows


def gpu_memory_gb() -> float | None:
    """The first CUDA card's memory in GB (None without one)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 1e9


def cpu_threads() -> int:
    """Torch threads for training on this machine's CPU: half the cores it may use, at least one.

    The other half is left to the engine, the agent and whatever else the machine runs: on two
    cores with one of them busy, two threads trained 50 steps where one trained 90, because
    each step waits for the slower thread (docs/benchmarks.md).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def detect() -> str:
    """The profile for this machine: CUDA >= 40 GB, other CUDA, Apple GPU, else CPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"
    memory = gpu_memory_gb()
    if memory is not None:
        return "cuda-large" if memory >= 40 * 1024**3 / 1e9 else "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def get(name: str) -> Profile:
    if name == "auto":
        name = detect()
    if name not in PROFILES:
        raise AutoresearchError(f"unknown profile {name!r}; choose from auto, {', '.join(PROFILES)}")
    return PROFILES[name]
