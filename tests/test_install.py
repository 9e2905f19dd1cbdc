"""install.py: the PyTorch build each kind of machine gets, decided before anything is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("install", Path(__file__).resolve().parent.parent / "install.py")
install = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install)


def args_of(commands) -> list[list[str]]:
    return [cmd[3:] for cmd in commands]  # without `python -m pip`


@pytest.fixture
def no_local_wheel(monkeypatch):
    monkeypatch.setattr(install, "local_cpu_wheel", lambda folder: None)


def test_a_gpu_machine_gets_pypis_cuda_build(tmp_path, no_local_wheel):
    assert args_of(install.torch_commands("Linux", True, None, tmp_path)) == [["install", install.TORCH]]
    assert install.torch_commands("Linux", True, "cuda", tmp_path) == []  # kept
    # the CPU build on a GPU machine is replaced, not kept because its version fits
    assert args_of(install.torch_commands("Linux", True, "cpu", tmp_path)) == [
        ["install", "--force-reinstall", install.TORCH]]


def test_a_cpu_machine_gets_the_cpu_build_from_pytorchs_cpu_index(tmp_path, no_local_wheel):
    assert args_of(install.torch_commands("Linux", False, None, tmp_path)) == [
        ["install", install.TORCH, "--index-url", install.CPU_INDEX]]
    assert install.torch_commands("Linux", False, "cpu", tmp_path) == []  # kept
    # a CUDA build on a machine without a GPU is replaced by the CPU build
    assert args_of(install.torch_commands("Linux", False, "cuda", tmp_path)) == [
        ["install", "--force-reinstall", install.TORCH, "--index-url", install.CPU_INDEX]]


def test_a_cpu_wheel_already_on_the_machine_comes_first(tmp_path, monkeypatch):
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    monkeypatch.setattr(install, "local_cpu_wheel", lambda folder: wheel)
    assert args_of(install.torch_commands("Linux", False, None, tmp_path)) == [["install", str(wheel)]]


@pytest.mark.parametrize("system", ["Darwin", "Windows"])
def test_other_systems_take_pypis_torch(tmp_path, no_local_wheel, system):
    assert args_of(install.torch_commands(system, False, None, tmp_path)) == [["install", install.TORCH]]
    assert install.torch_commands(system, False, "cpu", tmp_path) == []


def fake_wheel(folder: Path, version: str) -> Path:
    """A minimal, valid wheel named like torch's (pip only reads its name and metadata here)."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def test_a_cpu_wheel_in_pips_find_links_is_found_without_any_index(tmp_path, monkeypatch):
    links = tmp_path / "links"
    fake_wheel(links, "2.6.0+cpu")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    found = install.local_cpu_wheel(tmp_path / "out")
    assert found is not None and found.name == "torch-2.6.0+cpu-py3-none-any.whl" and found.exists()


def test_a_cuda_wheel_in_find_links_is_not_taken_for_a_cpu_one(tmp_path, monkeypatch):
    links = tmp_path / "links"
    fake_wheel(links, "2.6.0")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    assert install.local_cpu_wheel(tmp_path / "out") is None
