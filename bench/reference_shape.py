"""The `cuda-large` model at its full shape through the hand-over, on this machine's CPU.

    python bench/reference_shape.py [--batch 2] [--steps 2] [--dtype fp32 bf16] [--json]

What the GPU path does with the reference shape (depth 8, dim 512, sequence 2048, vocab 8192),
done here so that a shape or dtype problem shows on the CPU rather than at night on a GPU:

1. a harness (the template prepare.py with the `cuda-large` constants) is prepared on the
   offline `pysource` data, with a small corpus and EVAL_TOKENS of two batches;
2. for each dtype, in a process of its own: the template train.py's model is built at the
   profile's shape, trained `--steps` steps with its own optimizers on real batches (under bf16
   autocast for `bf16`, the way train.py trains on CUDA), and handed over by the real
   `evaluate_bpb`, under the same autocast, as train.py calls it under the engine;
3. the engine's evaluator process (`python -I -B -m autoresearch.evaluator`) loads the
   hand-over, checks it and scores the two batches with every check.

Printed per dtype: the hand-over's size on disk, its export time, the trainer's and the
evaluator's peak resident memory, the evaluator's load and scoring times and the score beside
the score of the same batches by the trainer's own forward pass (in its dtype). With
--json, one JSON object per dtype instead (tests/test_reference_shape.py reads them).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from autoresearch import capsliterals, profiles  # noqa: E402
from autoresearch.workspace import template_text  # noqa: E402
from evaluator import build  # noqa: E402  (bench/evaluator.py: train.py's own Setup, up to its model)

BATCHES = 2  # validation batches the evaluator scores


def write_workspace(folder: Path, batch: int) -> Path:
    """prepare.py and train.py with the `cuda-large` constants: the model's shape as the
    profile has it; the data small (offline pysource, a few MB), the evaluation two batches."""
    profile = profiles.PROFILES["cuda-large"]
    harness = dict(profile.harness, DATASET="pysource", EVAL_TOKENS=BATCHES * batch * profile.harness["MAX_SEQ_LEN"],
                   MAX_TRAIN_CHARS=4_000_000, MAX_VAL_CHARS=1_000_000, TOKENIZER_TRAIN_CHARS=4_000_000)
    train = dict(profile.train, DEVICE_BATCH_SIZE=batch, COMPILE=False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prepare.py").write_text(capsliterals.write_constants(template_text("llm", "prepare.py"), harness))
    (folder / "train.py").write_text(capsliterals.write_constants(template_text("llm", "train.py"), train))
    return folder


def run_logged(argv: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run a process to its end: (its result, its own peak resident memory in MB, from wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, child.returncode, out.read(), err.read()), usage.ru_maxrss / 1024


def train_and_hand_over(ws: Path, dtype: str, steps: int, handover: Path) -> dict:
    """In this process: train.py's model at full shape, built by its own Setup (on its device:
    CUDA when there is one), `steps` steps, handed over by evaluate_bpb."""
    import resource

    s = build(ws)
    torch, prepare = s["torch"], sys.modules["prepare"]
    model, tokenizer, config, device = s["raw_model"], s["tokenizer"], s["config"], s["device"]
    optimizers = s["build_optimizers"](model)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext())
    batches = prepare.make_dataloader(tokenizer, s["DEVICE_BATCH_SIZE"], s["MAX_SEQ_LEN"], "train", device=device)
    losses, t0 = [], time.perf_counter()
    for _ in range(steps):
        x, y, _epoch = next(batches)
        with autocast:
            loss = model(x, y)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    step_seconds = (time.perf_counter() - t0) / max(steps, 1)
    os.environ["AUTORESEARCH_HANDOVER"] = str(handover)
    t0 = time.perf_counter()
    with autocast:
        nan = prepare.evaluate_bpb(model, tokenizer, s["DEVICE_BATCH_SIZE"])
    export = time.perf_counter() - t0
    del os.environ["AUTORESEARCH_HANDOVER"]
    with autocast:  # the same batches scored by hand, in this process: what the evaluator must agree with
        by_hand = prepare.evaluate_bpb(model, tokenizer, s["DEVICE_BATCH_SIZE"])
    return {"dtype": dtype, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "shape": f"depth {config.n_layer}, dim {config.n_embd}, sequence {config.sequence_len}, "
                     f"vocab {config.vocab_size}",
            "losses": losses, "step_seconds": round(step_seconds, 2), "export_seconds": round(export, 2),
            "returned": str(nan), "by_hand_bpb": by_hand,
            "trainer_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def evaluate(ws: Path, handover: Path, cache: Path) -> tuple[dict, float]:
    """The engine's evaluator process on the hand-over: (its record, its peak resident MB)."""
    harness = ws / "prepare.py"
    job = {"harness": str(harness), "harness_sha256": hashlib.sha256(harness.read_bytes()).hexdigest(),
           "handover": str(handover), "record": str(handover.parent / "record.json"), "metric": "val_bpb"}
    (handover.parent / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if not re.fullmatch(r"(OMP|MKL|OPENBLAS)_NUM_THREADS", k)}
    env["AUTORESEARCH_CACHE_DIR"] = str(cache)
    done, peak = run_logged([sys.executable, "-I", "-B", "-m", "autoresearch.evaluator",
                             str(handover.parent / "job.json")], handover.parent, env)
    record = json.loads(Path(job["record"]).read_text()) if Path(job["record"]).exists() else {}
    if done.returncode != 0 and "error" not in record:
        record["error"] = (done.stderr.strip().splitlines() or ["no record"])[-1]
    return record, peak


def one(args: argparse.Namespace) -> None:
    """`--one DTYPE`: the trainer's side, in a process of its own (its peak memory is its own)."""
    figures = train_and_hand_over(args.workspace, args.one, args.steps, args.handover)
    print(json.dumps(figures), flush=True)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="rows per batch (the profile trains 128 on an 80 GB card)")
    parser.add_argument("--steps", type=int, default=2, help="training steps before the hand-over")
    parser.add_argument("--dtype", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--json", action="store_true", help="one JSON object per dtype")
    parser.add_argument("--one", choices=("fp32", "bf16"), help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--handover", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args)
    tmp = Path(tempfile.mkdtemp(prefix="reference-shape-"))
    try:  # about 400 MB of data, workspace and hand-overs: gone however the measuring ends
        ws = write_workspace(tmp / "ws", args.batch)
        env = dict(os.environ, AUTORESEARCH_CACHE_DIR=str(tmp / "cache"))
        env.pop("AUTORESEARCH_HANDOVER", None)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "prepare.py"], cwd=ws, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: prepare.py failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        if not args.json:
            print(f"prepared pysource at the cuda-large harness constants in {time.perf_counter() - t0:.0f} s")
        for dtype in args.dtype:
            handover = tmp / dtype / "handover"
            handover.parent.mkdir()
            done = subprocess.run([sys.executable, __file__, "--one", dtype, "--steps", str(args.steps),
                                   "--workspace", str(ws), "--handover", str(handover)],
                                  env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"error: training or the hand-over failed ({dtype}): {done.stderr.strip()[-1500:]}")
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures["handover_mb"] = round(sum(p.stat().st_size for p in handover.iterdir()) / 1e6, 1)
            record, peak = evaluate(ws, handover, tmp / "cache")
            figures.update(evaluator_peak_mb=round(peak, 1), record=record)
            if args.json:
                print(json.dumps(figures), flush=True)
                continue
            if "error" in record:
                print(f"{dtype}: the evaluator refused the hand-over: {record['error']}")
                continue
            print(f"{dtype}: {figures['shape']}, {figures['params_M']}M parameters, batch {args.batch}: "
                  f"{figures['step_seconds']:.1f} s per training step, trainer peak {figures['trainer_peak_mb']:,.0f} MB")
            print(f"  hand-over: {figures['handover_mb']:,.1f} MB on disk, exported in {figures['export_seconds']:.1f} s")
            print(f"  evaluator: peak {peak:,.0f} MB resident, load {record['load_seconds']:.1f} s, "
                  f"scoring {record['tokens']:,} tokens with every check {record['score_seconds']:.1f} s, "
                  f"val_bpb {record['val_bpb']:.4f} (the trainer's own {dtype} forward: {figures['by_hand_bpb']:.4f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
