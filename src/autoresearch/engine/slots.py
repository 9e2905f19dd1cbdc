"""Where the runs of `autoresearch run --workers N` go: one slot per worker.

A slot is a name (w1, w2, ...) and what its runs get from the machine: on NVIDIA one GPU
each, on the CPU an equal share of the cores (the thread-count variables PyTorch and its
libraries read). A GPU slot's runs see only their own card: their sandbox binds its device file
alone (`/dev/nvidiaN`, N the card's minor number, which need not be its index) beside the
control devices every CUDA process needs, and CUDA_VISIBLE_DEVICES names the card by its UUID,
which means the same card however CUDA numbers the cards it can open.

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


NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")  # one folder per card, named by its PCI bus id


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA card as nvidia-smi and the driver list it."""

    index: int  # nvidia-smi's number (PCI bus order)
    name: str  # its model
    uuid: str = ""  # GPU-..., "" when not known
    minor: int | None = None  # N of its /dev/nvidiaN, None when not known


@dataclass(frozen=True)
class Slot:
    """One worker's share of the machine; the unnamed slot is the whole machine (one at a time)."""

    name: str = ""
    env: tuple[tuple[str, str], ...] = ()  # set for every run of this worker
    gpu: int | None = None  # its card's index
    device: int | None = None  # its card's minor number: the only /dev/nvidiaN its sandbox binds (None: every card)

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


def shared_machine(seats: list[Slot]) -> str:
    """A note when several workers run on this machine ("" for one): their runs share its CPU
    (and memory, disk, each its own GPU), so one run can slow another while it is measured."""
    if len(seats) < 2:
        return ""
    return (f"note: the {len(seats)} workers share this machine, so a run can slow another worker's run while it "
            f"is measured: a hostile train.py could get a change kept on such a comparison (docs/trust.md, "
            f"not covered); where that matters, run one worker")


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


def gpus() -> list[Gpu]:
    """The NVIDIA cards of this machine in nvidia-smi's order ([] without any)."""
    if not shutil.which("nvidia-smi") or not any(Path("/dev").glob("nvidia[0-9]*")):
        return []
    try:
        result = proc.call(["nvidia-smi", "--query-gpu=index,name,uuid,pci.bus_id", "--format=csv,noheader"],
                           cwd=Path("/"), timeout=30)
    except AutoresearchError:
        return []
    if result.returncode != 0:
        return []
    return parse_gpus(result.stdout, minors())


def parse_gpus(csv: str, minor_of: dict[str, int]) -> list[Gpu]:
    """nvidia-smi's `index,name,uuid,pci.bus_id` lines, with each card's minor number by bus id."""
    found = []
    for line in csv.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or not parts[0].isdigit():
            continue
        uuid = parts[2] if parts[2].startswith(("GPU-", "MIG-")) else ""
        found.append(Gpu(int(parts[0]), parts[1], uuid, minor_of.get(bus_id(parts[3]))))
    return found


def bus_id(text: str) -> str:
    """A PCI bus id in one spelling: nvidia-smi writes an 8-digit domain (00000000:3B:00.0), the
    driver's folders a 4-digit one in lower case (0000:3b:00.0)."""
    text = text.strip().lower()
    domain, _, rest = text.partition(":")
    if not rest or not domain or any(c not in "0123456789abcdef" for c in domain):
        return text
    return f"{int(domain, 16):04x}:{rest}"


def minors(root: Path = NVIDIA_PROC) -> dict[str, int]:
    """Each card's minor number by bus id, from the driver's `information` files ("Device Minor: N")."""
    found: dict[str, int] = {}
    try:
        folders = sorted(root.iterdir())
    except OSError:
        return found
    for folder in folders:
        try:
            text = (folder / "information").read_text()
        except OSError:
            continue
        match = re.search(r"^Device Minor:\s*(\d+)", text, re.MULTILINE)
        if match:
            found[bus_id(folder.name)] = int(match.group(1))
    return found


def gpu_models() -> list[str]:
    """The NVIDIA GPUs of this machine by model, in nvidia-smi's order ([] without any)."""
    return [g.name for g in gpus()]


def check_models(models: list[str]) -> None:
    """Refuse a pool whose GPUs differ: their results would not compare."""
    kinds = sorted(set(models))
    if len(kinds) > 1:
        raise AutoresearchError(
            f"this machine has GPUs of different models ({', '.join(kinds)}): runs on one would be compared with "
            f"runs on another; keep the workers on one model with CUDA_VISIBLE_DEVICES (one workspace per model)"
        )


def visible(count: int, environ: dict[str, str] | None = None) -> list[int]:
    """The GPU indices this process may use: CUDA_VISIBLE_DEVICES when it lists numbers, else all."""
    environ = os.environ if environ is None else environ
    given = environ.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return list(range(count))
    return [int(x) for x in re.split(r"\s*,\s*", given.strip()) if x.isdigit() and int(x) < count]


def gpu_slot(name: str, card: Gpu) -> Slot:
    """A worker on `card` alone: named by UUID where known (else by index, in PCI bus order)."""
    env = (("CUDA_VISIBLE_DEVICES", card.uuid),) if card.uuid else (
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", str(card.index)))
    return Slot(name, env, gpu=card.index, device=card.minor)


def own_card(environ: dict[str, str] | None = None, cards: list[Gpu] | None = None) -> Slot:
    """The unnamed slot of a process that was given one card (a Ray actor: Ray sets its
    CUDA_VISIBLE_DEVICES): its runs bind that card alone. The whole machine otherwise."""
    cards = gpus() if cards is None else cards
    shown = visible(len(cards), environ) if cards else []
    return gpu_slot("", cards[shown[0]]) if len(shown) == 1 else Slot()


def local(count: int | str, *, cards: list[Gpu] | None = None, cpus: int | None = None,
          environ: dict[str, str] | None = None) -> list[Slot]:
    """The slots of `count` workers on this machine: one GPU each on NVIDIA, else a share of the cores."""
    cards = gpus() if cards is None else cards
    shown = [cards[i] for i in visible(len(cards), environ)] if cards else []
    if shown:
        check_models([c.name for c in shown])
        n = len(shown) if count == AUTO else int(count)
        if n > len(shown):
            raise AutoresearchError(f"--workers {n}: this machine shows {len(shown)} GPU"
                                    f"{'s' if len(shown) != 1 else ''}; one worker per GPU")
        return [gpu_slot(f"w{k + 1}", card) for k, card in enumerate(shown[:n])]
    n = 1 if count == AUTO else int(count)
    threads = str(max(1, (cpus or cores()) // n))
    return [Slot(f"w{k + 1}", tuple((v, threads) for v in THREAD_VARIABLES)) for k in range(n)]
