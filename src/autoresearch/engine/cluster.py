"""The workers of `autoresearch run --ray [ADDRESS]`: Ray actors, one GPU each, on any node.

The driver (this machine) keeps everything it keeps with local workers: the branch, the
ledger, the pins, the journals, the keep rule (engine/pool.py). Only the runs go out: each
worker's Engine gets a `RemoteRunner` in place of its Runner, which sends the commit's files
and the run's limits to that worker's actor and waits for the Measurement.

An actor (`Node`, on whichever node Ray places it) keeps a small workspace of its own in a
temporary folder: the driver's pinned settings (the text of autoresearch.toml that the
driver's engine reads, never its working tree's), its pins (harness and validation
fingerprints) and, for each run, the commit's tracked files committed there. Before its first
run it prepares the data on its node with the pinned harness and must arrive at the pinned
validation sha (`preparing.prepare` refuses anything else); then each run is the local
Runner's: the trainer in the node's sandbox, the engine's evaluator, the engine's clock.

A node lost mid-run (`ray` raises an actor error) is a MachineError: the pool retires that
worker and queues the experiment again for another. Ray is optional (`pip install
"autoresearch[ray]"`); nothing imports it unless `--ray` is given.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autoresearch import gitrepo, pins, preparing, proc
from autoresearch.config import CONFIG_NAME
from autoresearch.engine.guard import Guard
from autoresearch.engine.measure import Limits, Measurement
from autoresearch.engine.earlystop import Reference
from autoresearch.engine.runner import REQUIRE, Runner, own_log, write_log
from autoresearch.engine.slots import Slot, check_models, gpu_models, own_card
from autoresearch.errors import AutoresearchError, MachineError, WorkerLost
from autoresearch.files import remove_tree
from autoresearch.engine.lifecycle import Pen
from autoresearch.state import Current
from autoresearch.store import Journal
from autoresearch.workspace import Workspace

NODE_PREFIX = "autoresearch-node-"  # a node's workspace in its temporary directory
LOG_BYTES = 256 * 1024  # of a remote run's log, copied back into the worker's log here


def _ray():
    try:
        import ray
    except ImportError:
        raise AutoresearchError('--ray needs Ray: pip install "autoresearch[ray]"') from None
    return ray


@dataclass(frozen=True)
class NodeReport:
    node: str  # the node's id (two nodes may share an address)
    gpu: str  # the model of the GPU Ray gave the actor ("" on the CPU)


class Node:
    """A worker's actor: runs commits it is sent, in a workspace of its own on its node."""

    def __init__(self, config_text: str, harness_sha256: str, val_sha256: str, require_sandbox: bool = False):
        if require_sandbox:  # `run --require-sandbox` on the driver holds on every node
            os.environ[REQUIRE] = "1"
        for gone in proc.sweep_folders(NODE_PREFIX):  # left by actors killed with their pool
            remove_tree(pins.private_dir(gone / "ws"))
        self.base = proc.own_folder(NODE_PREFIX)
        self.root = self.base / "ws"
        self.root.mkdir()
        (self.root / CONFIG_NAME).write_text(config_text)
        gitrepo.init(self.root, "the driver's configuration")
        pins.write(pins.fresh(self.root, harness_sha256, val_sha256))
        pins.write_settings(self.root, config_text)  # what Workspace.load reads here
        self.val_sha256 = val_sha256
        self.ready = False

    def close(self) -> None:
        """The node's workspace and its private state gone (the data cache stays for the next line)."""
        remove_tree(pins.private_dir(self.root))
        remove_tree(self.base)

    def report(self) -> NodeReport:
        import ray

        models = gpu_models()
        visible = [int(x) for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip().isdigit()]
        gpu = models[visible[0]] if models and visible and visible[0] < len(models) else ""
        return NodeReport(ray.get_runtime_context().get_node_id(), gpu)

    def _load(self, files: dict[str, bytes]) -> tuple[Workspace, str]:
        """The commit's files as this workspace's next commit."""
        for path in gitrepo.tracked(self.root):
            if path != CONFIG_NAME:
                (self.root / path).unlink(missing_ok=True)
        for path, data in files.items():
            if path == CONFIG_NAME:
                continue
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        sha = gitrepo.commit_all(self.root, "a run")
        return Workspace.load(self.root), sha

    def _prepare(self, ws: Workspace) -> None:
        """The data on this node, from the pinned harness, at the pinned validation sha."""
        if ws.config.template != "llm":
            self.ready = True
            return
        record = preparing.manifest(ws) if preparing.is_prepared(ws) else preparing.prepare(ws)
        if not record or record.get("val_sha256") != self.val_sha256:
            raise MachineError(f"the validation split on this node does not match the pinned one "
                               f"({str((record or {}).get('val_sha256', 'none'))[:12]}, pinned {self.val_sha256[:12]})")
        self.ready = True

    def run(self, files: dict[str, bytes], limits: Limits, kind: str, description: str,
            behind: "Reference | None" = None) -> tuple[Measurement, bytes]:
        ws, sha = self._load(files)
        if not self.ready:
            self._prepare(ws)
        lines: list[str] = []
        runner = Runner(ws, limits, Guard(ws), stream=io.StringIO(), live=False, out=lines.append, slot=own_card())
        pen = Pen(ws.store, "node", Journal(branch="node", frontier=sha, kind=kind, description=description,
                                            candidate=sha))
        m = runner.run(sha, pen, kind=kind, description=description, behind=behind)
        pen.close()
        try:
            with open(ws.log_path, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - LOG_BYTES))
                log = fh.read()
        except OSError:
            log = b""
        return m, log


class RemoteRunner:
    """Stands in for a worker's Runner: the run goes to its actor; the journal, current record
    and log stay here, with the driver."""

    def __init__(self, cluster: "Cluster", actor, engine_ws: Workspace, limits: Limits, slot: Slot,
                 halt: Callable[[], bool] | None):
        self.cluster, self.actor, self.ws, self.limits, self.slot, self.halt = cluster, actor, engine_ws, limits, slot, halt
        self.state = engine_ws.state.seat(slot.name) if slot.name else engine_ws.state
        self.shown_path = engine_ws.worker_log(slot.name or "w1")
        self.log_path = own_log(engine_ws, slot.name or "w1")  # the copy the engine keeps (runner.Runner)

    def run(self, commit: str, pen: Pen, *, kind: str, description: str,
            behind: "Reference | None" = None) -> Measurement:
        ray = self.cluster.ray
        files = commit_files(self.ws, commit)
        self.state.write_current(Current(commit=commit[:7], description=description, kind=kind, started_at=time.time(),
                                         budget=self.ws.config.budget, agent=pen.journal.agent, pid=os.getpid()))
        try:
            ref = self.actor.run.remote(files, self.limits, kind, description, behind)
            while not ray.wait([ref], timeout=0.5)[0]:
                if self.halt is not None and self.halt():
                    ray.kill(self.actor)  # the pool is stopping: the actor, its run and its sandbox go
                    raise KeyboardInterrupt
            m, log = ray.get(ref)
        except self.cluster.lost as exc:
            raise WorkerLost(f"worker {self.slot.name} lost its node ({type(exc).__name__})") from exc
        finally:
            self.state.clear_current()
        write_log(self.log_path, self.shown_path, log)
        return m


def commit_files(ws: Workspace, commit: str) -> dict[str, bytes]:
    """The tracked files of `commit` (the notes aside), path -> bytes, as a run sees them."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-send-") as tmp:
        gitrepo.export_tree(ws.root, commit, Path(tmp), exclude=[ws.config.notes] if ws.config.notes else [])
        return {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}


class Cluster:
    """A connection to a Ray cluster and one actor per worker, on the GPUs (or CPUs) it offers."""

    def __init__(self, ws: Workspace, address: str | None, count: int | str | None,
                 out: Callable[[str], None]):
        ray = self.ray = _ray()
        from ray.exceptions import RayActorError, WorkerCrashedError

        self.lost = (RayActorError, WorkerCrashedError)
        ray.init(address=address or "auto", log_to_driver=False, logging_level="WARNING",
                 configure_logging=False)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        nodes = len([n for n in ray.nodes() if n.get("Alive")])
        n = (gpus or nodes) if count in (None, "auto") else int(count)
        if gpus and n > gpus:
            raise AutoresearchError(f"--workers {n}: the Ray cluster has {gpus} GPUs; one worker per GPU")
        pinned = ws.pins
        config = ws.settings_text  # the pinned settings, not the tree's file
        options = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        actor_class = ray.remote(**options)(Node).options(scheduling_strategy="SPREAD", max_restarts=0)
        require = ws.config.require_sandbox or os.environ.get(REQUIRE) == "1"
        self.actors = [actor_class.remote(config, pinned.harness_sha256, pinned.val_sha256, require) for _ in range(n)]
        reports = ray.get([a.report.remote() for a in self.actors])
        check_models([r.gpu for r in reports if r.gpu] if gpus else [])
        self.slots = [Slot(f"w{k + 1}") for k in range(n)]
        used = len({r.node for r in reports})
        out(f"Ray cluster: {n} worker{'s' if n != 1 else ''} on {used} node{'s' if used != 1 else ''} "
            f"({reports[0].gpu or 'CPU'})")

    def runner(self, ws: Workspace, slot: Slot, halt: Callable[[], bool] | None = None) -> "RemoteRunner":
        """The Runner of `slot`'s worker: its actor (the driver's baseline goes to the first)."""
        k = int(slot.name[1:]) - 1 if slot.name else 0
        return RemoteRunner(self, self.actors[k], ws, Limits.of(ws.config, ws.pins), slot, halt)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # what an actor lost with its node had, the next node removes
            refs = [actor.close.remote() for actor in self.actors]
            self.ray.wait(refs, num_returns=len(refs), timeout=30)
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone with its node
                pass
        self.ray.shutdown()


__all__ = ["Cluster", "Node", "RemoteRunner", "commit_files"]
