"""Harness throughput on one CPU core: tokenization, and the dataloader at the reference shape.

    python bench/dataloader.py [--chars 24000000] [--seconds 10]

Prepares a pysource harness (vocab 8192, sequence 2048, the reference shape) in a temporary
cache, then measures with one thread:
- tokenization: characters and tokens per second of `Tokenizer.encode` over training text;
- the dataloader: tokens per second of `make_dataloader(tok, 128, 2048, "train")` on the CPU
  (the reference shape consumes about 1.57M tokens/s on an H100; the goal is >= 5M);
- `prepare` itself with the cpu profile's constants, from a cold cache (goal: < 2 minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch import capsliterals, profiles
from autoresearch.workspace import template_text


def harness(folder: Path, values: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "prepare.py").write_text(capsliterals.write_constants(template_text("llm", "prepare.py"), values))
    return folder


def timed_prepare(folder: Path, cache: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "prepare.py"], cwd=folder, check=True, capture_output=True,
                   env={**os.environ, "AUTORESEARCH_CACHE_DIR": str(cache)})
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--chars", type=int, default=24_000_000, help="training text for the reference harness")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run each measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cpu = profiles.PROFILES["cpu"].harness
        seconds = timed_prepare(harness(tmp / "cpu", dict(cpu, DATASET="pysource")), tmp / "cache-cpu")
        print(f"prepare (cpu profile, pysource, cold cache): {seconds:.1f} s")

        ref = dict(profiles.PROFILES["cuda-large"].harness, DATASET="pysource", MAX_TRAIN_CHARS=args.chars,
                   MAX_VAL_CHARS=2_000_000, TOKENIZER_TRAIN_CHARS=min(args.chars, 8_000_000))
        folder = harness(tmp / "ref", ref)
        seconds = timed_prepare(folder, tmp / "cache-ref")
        print(f"prepare (vocab 8192, {args.chars / 1e6:.0f}M chars, pysource, cold cache): {seconds:.1f} s")

        os.environ["AUTORESEARCH_CACHE_DIR"] = str(tmp / "cache-ref")
        spec = importlib.util.spec_from_file_location("prepare", folder / "prepare.py")
        h = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(h)
        import torch

        torch.set_num_threads(1)
        tok = h.Tokenizer.from_directory()
        docs = [tok.decode(d) for d in _sample_docs(h, 300)]
        chars = tokens = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            for ids in tok.encode(docs, num_threads=1):
                tokens += len(ids)
            chars += sum(map(len, docs))
        dt = time.perf_counter() - t0
        print(f"tokenization, 1 thread: {chars / dt / 1e6:.2f}M chars/s, {tokens / dt / 1e6:.2f}M tokens/s")

        loader = h.make_dataloader(tok, 128, 2048, "train", device="cpu")
        next(loader)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            x, _, _ = next(loader)
            n += x.numel()
        dt = time.perf_counter() - t0
        print(f"dataloader B=128 T=2048, 1 thread: {n / dt / 1e6:.1f}M tokens/s")


def _sample_docs(h, count):
    import numpy as np

    tokens = np.memmap(h.PREPARED_DIR / "train.bin", dtype=np.uint16, mode="r")
    offsets = np.load(h.PREPARED_DIR / "train.idx.npy")
    return [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(min(count, len(offsets) - 1))]


if __name__ == "__main__":
    main()
