"""Install autoresearch with the PyTorch build this machine can use, then the package itself.

    python install.py          # the tool
    python install.py --dev    # the tool and what its tests need

A plain `pip install -e .` takes PyPI's torch, which on Linux is the CUDA build: several GB of
CUDA libraries on a machine without an NVIDIA GPU. This script chooses instead:

- an NVIDIA GPU (nvidia-smi lists one, or the driver shows one under /proc): PyPI's torch,
  the CUDA build;
- Linux without one: the CPU build, from a CPU wheel already on this machine (pip's
  find-links, as an offline mirror provides) when there is one, else from PyTorch's CPU index;
- macOS and Windows: PyPI's torch (there it has no CUDA libraries to spare).

A torch that is already installed and fits the machine is kept. Everything goes through the
`pip` of the Python that runs this script (a virtual environment's, when one is active), and
the script stops at the first command that fails. Standard library only: it runs before
anything is installed.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TORCH = "torch>=2.5"  # as in pyproject.toml
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ROOT = Path(__file__).resolve().parent


def has_nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            listed = None
        if listed is not None and listed.returncode == 0 and "GPU" in listed.stdout:
            return True
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def installed_torch() -> str | None:
    """'cuda', 'cpu' or 'other' for the torch this Python has (without importing it here); None when absent."""
    code = "import torch; print('cuda' if torch.version.cuda else 'cpu')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or "other" if done.returncode == 0 else None


def pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args]


def local_cpu_wheel(folder: Path) -> Path | None:
    """A CPU build of torch that pip can take without any index (find-links), downloaded into `folder`."""
    done = subprocess.run(pip("download", "--no-index", "--no-deps", "--quiet", "-d", str(folder), TORCH),
                          capture_output=True, text=True)
    wheels = sorted(folder.glob("torch-*+cpu-*.whl"))
    return wheels[-1] if done.returncode == 0 and wheels else None


def torch_commands(system: str, gpu: bool, have: str | None, folder: Path) -> list[list[str]]:
    """The pip commands that give this machine its torch ([] when the installed one fits)."""
    if system != "Linux":
        return [] if have else [pip("install", TORCH)]
    if (gpu and have == "cuda") or (not gpu and have == "cpu"):
        return []
    # a build of the wrong kind already satisfies the version range: replace it, not keep it
    replace = ["--force-reinstall"] if have else []
    if gpu:
        return [pip("install", *replace, TORCH)]
    wheel = local_cpu_wheel(folder)
    if wheel is not None:
        return [pip("install", *replace, str(wheel))]
    return [pip("install", *replace, TORCH, "--index-url", CPU_INDEX)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", action="store_true", help="also install what the tests need")
    args = parser.parse_args(argv)
    system, gpu, have = platform.system(), has_nvidia_gpu(), installed_torch()
    print(f"install: {system}, {'an NVIDIA GPU' if gpu else 'no NVIDIA GPU'}, torch {'installed: ' + have if have else 'not installed'}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="autoresearch-install-") as tmp:
        commands = torch_commands(system, gpu, have, Path(tmp))
        commands.append(pip("install", "-e", f"{ROOT}[dev]" if args.dev else str(ROOT)))
        for cmd in commands:
            print("install: " + " ".join(cmd[3:] if cmd[:3] == pip() else cmd), flush=True)
            if subprocess.run(cmd).returncode != 0:
                print(f"install: failed: {' '.join(cmd)}", file=sys.stderr)
                return 1
    build = installed_torch()
    print(f"install: done; torch is the {build} build" if build else "install: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
