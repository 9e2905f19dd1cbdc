"""Where the runs of `autoresearch run --workers N` go: one slot per worker.

A slot is a name (w1, w2, ...) and what its runs get from the machine: on NVIDIA one GPU
each (CUDA_VISIBLE_DEVICES, in PCI bus order as nvidia-smi counts them), on the CPU an equal
share of the cores (the thread-count variables PyTorch and its libraries read). The engine
gives a slot's runs this environment and nothing else about the machine changes.

Comparisons never mix hardware: a pool of GPUs of different models is refused (`check_models`),
because a candidate measured on one model would be compared with a frontier measured on another.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from autoresearch import proc
from autoresearch.errors import AutoresearchError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
AUTO = "auto"


@dataclass(frozen=True)
class Slot:
    """One worker's share of the machine; the unnamed slot is the whole machine (one at a time)."""

    name: str = ""
    env: tuple[tuple[str, str], ...] = ()  # set for every run of this worker
    gpu: int | None = None

    def describe(self) -> str:
        if self.gpu is not None:
            return f"{self.name} on GPU {self.gpu}"
        threads = dict(self.env).get("OMP_NUM_THREADS")
        return f"{self.name} on {threads} CPU thread{'s' if threads != '1' else ''}" if threads else self.name


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def oversubscribed(seats: list[Slot], cpus: int | None = None) -> str:
    """A warning when CPU workers outnumber the cores ("" when each has a core of its own).
    Not refused: a command that waits (on a remote machine, on a server) needs no core."""
    cpus = cpus or cores()
    if not seats or any(s.gpu is not None for s in seats) or len(seats) <= cpus:
        return ""
    return (f"warning: {len(seats)} workers on {cpus} CPU core{'s' if cpus != 1 else ''}: their runs share cores, so "
            f"each trains fewer steps in its budget and its score moves with the others' load (a change can look "
            f"better or worse than it is); use --workers {cpus} or fewer, unless the command waits rather than computes")


def parse_count(value: str) -> int | str:
    """`--workers` as given: a positive number, or "auto"."""
    if value.strip().lower() == AUTO:
        return AUTO
    try:
        n = int(value)
    except ValueError:
        raise AutoresearchError(f"--workers {value!r}: give a number of workers, or auto (one per GPU)") from None
    if n < 1:
        raise AutoresearchError("--workers must be 1 or more")
    return n


def gpu_models() -> list[str]:
    """The NVIDIA GPUs of this machine by model, in nvidia-smi's order ([] without any)."""
    if not shutil.which("nvidia-smi") or not any(Path("/dev").glob("nvidia[0-9]*")):
        return []
    try:
        result = proc.call(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], cwd=Path("/"), timeout=30)
    except AutoresearchError:
        return []
    if result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def check_models(models: list[str]) -> None:
    """Refuse a pool whose GPUs differ: their results would not compare."""
    kinds = sorted(set(models))
    if len(kinds) > 1:
        raise AutoresearchError(
            f"this machine has GPUs of different models ({', '.join(kinds)}): runs on one would be compared with "
            f"runs on another; keep the workers on one model with CUDA_VISIBLE_DEVICES (one workspace per model)"
        )


def visible(models: list[str], environ: dict[str, str] | None = None) -> list[int]:
    """The GPU indices this process may use: CUDA_VISIBLE_DEVICES when it lists numbers, else all."""
    environ = os.environ if environ is None else environ
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return list(range(len(models)))
    return [int(x) for x in re.split(r"\s*,\s*", given.strip()) if x.isdigit() and int(x) < len(models)]


def local(count: int | str, *, models: list[str] | None = None, cpus: int | None = None,
          environ: dict[str, str] | None = None) -> list[Slot]:
    """The slots of `count` workers on this machine: one GPU each on NVIDIA, else a share of the cores."""
    models = gpu_models() if models is None else models
    indices = visible(models, environ) if models else []
    if indices:
        check_models([models[i] for i in indices])
        n = len(indices) if count == AUTO else int(count)
        if n > len(indices):
            raise AutoresearchError(f"--workers {n}: this machine shows {len(indices)} GPU"
                                    f"{'s' if len(indices) != 1 else ''}; one worker per GPU")
        return [Slot(f"w{k + 1}", (("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", str(i))), gpu=i)
                for k, i in enumerate(indices[:n])]
    n = 1 if count == AUTO else int(count)
    threads = str(max(1, (cpus or cores()) // n))
    return [Slot(f"w{k + 1}", tuple((v, threads) for v in THREAD_VARIABLES)) for k in range(n)]
