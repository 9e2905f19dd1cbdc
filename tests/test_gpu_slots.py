"""One GPU per worker, for real: each worker's runs see their own card and no other.

No GPU is needed: the cards are made up (nvidia-smi's lines, the driver's /proc folders, a /dev
of device files) and what is checked is what the sandbox is asked to bind and what the run's
environment names.
"""

from __future__ import annotations

from pathlib import Path

from autoresearch import bubblewrap, sandbox
from autoresearch.engine import slots

# two cards whose minor numbers are not their indices (the driver numbers them as it finds them)
SMI = """0, NVIDIA H100 80GB HBM3, GPU-aaaa1111-0000-0000-0000-000000000000, 00000000:1B:00.0
1, NVIDIA H100 80GB HBM3, GPU-bbbb2222-0000-0000-0000-000000000000, 00000000:3B:00.0
"""


def driver_folders(root: Path) -> Path:
    for bus, minor in (("0000:1b:00.0", 1), ("0000:3b:00.0", 0)):
        (root / bus).mkdir(parents=True)
        (root / bus / "information").write_text(f"Model: \t\t NVIDIA H100\nIRQ:   \t\t 42\nGPU UUID: \t\t x\n"
                                                f"Device Minor: \t\t {minor}\nBus Type: \t\t PCIe\n")
    return root


def made_up_dev(root: Path) -> Path:
    root.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidia10", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools",
                 "nvidia-modeset", "null"):
        (root / name).write_text("")
    (root / "nvidia-caps").mkdir()
    return root


def test_cards_are_read_with_their_uuid_and_the_minor_number_of_their_device_file(tmp_path):
    cards = slots.parse_gpus(SMI, slots.minors(driver_folders(tmp_path / "gpus")))
    assert [(c.index, c.uuid[:8], c.minor) for c in cards] == [(0, "GPU-aaaa", 1), (1, "GPU-bbbb", 0)]
    workers = slots.local("auto", cards=cards, environ={})
    # each worker names its card by UUID and binds the card's own device file, not its index's
    assert [(s.gpu, s.device, dict(s.env)["CUDA_VISIBLE_DEVICES"][:8]) for s in workers] == [
        (0, 1, "GPU-aaaa"), (1, 0, "GPU-bbbb")]
    assert slots.minors(tmp_path / "none") == {}  # no driver folders: the minor is unknown


def test_a_card_of_unknown_number_is_named_by_index_in_bus_order():
    (only,) = slots.local(1, cards=slots.parse_gpus("0, NVIDIA A100, N/A, 00000000:07:00.0\n", {}), environ={})
    assert dict(only.env) == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
    assert only.device is None  # its sandbox binds every card: CUDA_VISIBLE_DEVICES alone keeps it to its own


def binds(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--dev-bind"]


def test_a_workers_sandbox_binds_only_its_own_card_and_the_control_devices(tmp_path):
    dev = made_up_dev(tmp_path / "dev")
    found = sandbox.gpu_devices(dev)
    assert [Path(d).name for d in found] == ["nvidia0", "nvidia1", "nvidia2", "nvidia10", "nvidiactl",
                                             "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps"]
    control = [str(dev / n) for n in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "nvidia-caps")]
    jail = sandbox.Jail(binds=(), cwd=Path("/"), gpus=True, card=1)
    args = bubblewrap.arguments(jail, python=[], gpus=sandbox.card_devices(found, jail.card), root=False)
    assert binds(args) == [str(dev / "nvidia1"), *control]
    # card 1 is not card 10: the match is the whole name
    assert binds(bubblewrap.arguments(sandbox.Jail((), Path("/"), card=10), python=[],
                                      gpus=sandbox.card_devices(found, 10), root=False)) == [str(dev / "nvidia10"), *control]
    # one at a time (no card named): every card; no GPU wanted: none
    assert binds(bubblewrap.arguments(sandbox.Jail((), Path("/")), python=[],
                                      gpus=sandbox.card_devices(found, None), root=False)) == list(found)
    assert binds(bubblewrap.arguments(sandbox.Jail((), Path("/"), gpus=False), python=[], gpus=found, root=False)) == []


def test_the_trainer_and_the_evaluator_of_a_worker_get_its_card(tmp_path, monkeypatch):
    """Through Sandbox.wrap, as the runner builds both jails for a worker's slot."""
    from autoresearch.engine.runner import Stage
    from autoresearch.workspace import Workspace
    from support import llm_like

    dev = made_up_dev(tmp_path / "dev")
    found = sandbox.gpu_devices(dev)
    monkeypatch.setattr(sandbox, "gpu_devices", lambda: found)  # this machine's /dev, made up
    ws = llm_like(tmp_path / "ws")
    worker = slots.gpu_slot("w1", slots.Gpu(2, "NVIDIA H100", "GPU-cccc", minor=2))
    box = sandbox.Sandbox(sandbox.BUBBLEWRAP, program="bwrap")
    stage = Stage(Workspace.load(ws.root), box, ws.pins, tmp_path / "scratch", tmp_path / "scratch" / "work",
                  None, None, worker)
    (tmp_path / "scratch" / "evaluator").mkdir(parents=True)
    for jail in (stage.trainer_jail(), stage.evaluator_jail(tmp_path / "record.json")):
        assert jail.env["CUDA_VISIBLE_DEVICES"] == "GPU-cccc"
        assert binds(box.wrap(["true"], jail)) == [str(dev / "nvidia2"), *(d for d in found if "nvidia" in d
                                                                         and not Path(d).name[6:].isdigit())]


def test_a_ray_actor_given_one_card_binds_that_card_alone(tmp_path):
    cards = slots.parse_gpus(SMI, slots.minors(driver_folders(tmp_path / "gpus")))
    given = slots.own_card({"CUDA_VISIBLE_DEVICES": "1"}, cards)
    assert (given.name, given.device, dict(given.env)["CUDA_VISIBLE_DEVICES"][:8]) == ("", 0, "GPU-bbbb")
    assert slots.own_card({}, cards) == slots.Slot()  # every card: the whole machine
    assert slots.own_card({"CUDA_VISIBLE_DEVICES": "1"}, []) == slots.Slot()  # no GPU at all
