"""`autoresearch run --ray ADDRESS`: the pool's workers as actors of a real Ray cluster of two
nodes started by the test; one node is killed while its actor trains, and the experiment it
had goes to the other worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import clean, head, llm_like, no_journals, rows, wait_for
from test_loop import AGENT

ray = pytest.importorskip("ray")
# one Ray cluster at a time on this machine: the tests of this module share one worker
pytestmark = pytest.mark.xdist_group("ray")
from ray.cluster_utils import Cluster  # noqa: E402


def waiter(tmp_path: Path, name: str) -> str:
    """A train.py body that writes its pid to tmp_path/<name>.pid, then waits for tmp_path/go."""
    go = tmp_path / "go"
    return (f"import os, time\nopen({str(tmp_path / (name + '.pid'))!r}, 'w').write(str(os.getpid()))\n"
            f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.1)")


def two_waiting(tmp_path: Path, cluster) -> tuple[Path, subprocess.Popen]:
    """`run --ray` on the cluster with two changes that wait for tmp_path/go: (workspace, loop)."""
    root = tmp_path / "ws"
    llm_like(root)
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps([{"value": 0.5, "body": waiter(tmp_path, "a"), "desc": "wait a"},
                                 {"value": 0.7, "body": waiter(tmp_path, "b"), "desc": "wait b"}]))
    # Ctrl-C must reach the loop however the suite was launched (see test_loop.start_loop)
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "run", "--agent", "command", "--agent-command", f"{sys.executable} {script}",
         "--ray", cluster.address, "--max-experiments", "2"],
        cwd=root, env={**os.environ, "STEPS": str(steps)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return root, proc


@pytest.fixture
def cluster(monkeypatch):
    # the nodes take the test's environment: its state and cache folders, and no sandbox (the
    # waiting runs write outside their folder)
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "off")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    second = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    c.second = second
    yield c
    c.shutdown()


def test_a_lost_node_requeues_its_experiment_and_the_loop_finishes(tmp_path, cluster):
    root, proc = two_waiting(tmp_path, cluster)
    try:
        assert wait_for(lambda: (tmp_path / "a.pid").exists() and (tmp_path / "b.pid").exists(), timeout=120), \
            proc.stderr.read() if proc.poll() is not None else "not both running"
        cluster.remove_node(cluster.second)  # one of the two waiting runs was on it
        (tmp_path / "go").touch()
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        (tmp_path / "go").touch()
    assert proc.returncode == 0, out + err
    assert "Ray cluster: 2 workers on 2 nodes" in out, out
    got = [x for x in rows(root) if x.kind != "baseline"]
    lost = [x for x in got if x.status == "interrupted"]
    assert len(lost) == 1 and "lost its node" in lost[0].reason, [(x.status, x.reason) for x in got]
    again = [x for x in got if x.description == lost[0].description and x.kind == "experiment" and x is not lost[0]]
    assert again and again[0].status in ("keep", "discard", "stale") and again[0].worker != lost[0].worker
    assert {x.description for x in got if x.kind == "experiment" and x.status != "interrupted"} == {"wait a", "wait b"}
    assert clean(root)
    assert "lost its node" in out and "goes to the next worker" in out


def test_a_node_that_prepares_other_validation_data_runs_nothing(tmp_path):
    """The actor's class, called here directly: its data must arrive at the pinned val sha."""
    from autoresearch.engine.cluster import Node, commit_files
    from autoresearch.engine.measure import Limits
    from autoresearch.errors import MachineError
    from autoresearch.workspace import Workspace

    root = tmp_path / "ws"
    ws = llm_like(root)
    config = (root / "autoresearch.toml").read_text()
    node = Node(config, ws.pins.harness_sha256, "cd" * 32)  # a pin the fake harness's data does not match
    limits = Limits.of(ws.config)
    with pytest.raises(MachineError, match="does not match the pinned one"):
        node.run(commit_files(ws, head(root)), limits, "baseline", "baseline")
    node.close()
    right = Node(config, ws.pins.harness_sha256, ws.pins.val_sha256)
    m, log = right.run(commit_files(Workspace.load(root), head(root)), limits, "baseline", "baseline")
    right.close()
    assert m.ok and m.value == 1.0 and b"val_bpb" in log


def test_a_closed_node_leaves_nothing_and_a_killed_nodes_folder_goes_with_the_next_node(tmp_path):
    """An actor killed with its pool (Ctrl-C, a lost node) cannot clean up after itself: the
    next node on the host removes its workspace and private state."""
    from autoresearch import pins
    from autoresearch.engine.cluster import Node

    ws = llm_like(tmp_path / "ws")
    config = (tmp_path / "ws" / "autoresearch.toml").read_text()
    args = (config, ws.pins.harness_sha256, ws.pins.val_sha256)
    made = subprocess.run([sys.executable, "-c", "import sys; from autoresearch.engine.cluster import Node; "
                           f"print(Node(*{args!r}).base)"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert made.returncode == 0, made.stderr
    killed = Path(made.stdout.strip())
    assert (killed / "ws").is_dir() and pins.private_dir(killed / "ws").is_dir()
    node = Node(*args)
    assert not killed.exists() and not pins.private_dir(killed / "ws").exists()
    assert node.root.is_dir() and pins.private_dir(node.root).is_dir()
    node.close()
    assert not node.base.exists() and not pins.private_dir(node.root).exists()


def test_ctrl_c_stops_the_cluster_workers_and_records_their_runs(tmp_path, cluster):
    root, proc = two_waiting(tmp_path, cluster)
    try:
        assert wait_for(lambda: (tmp_path / "a.pid").exists() and (tmp_path / "b.pid").exists(), timeout=120)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        (tmp_path / "go").touch()  # the unsandboxed runs on the nodes outlive their actors
    assert proc.returncode == 130, out + err
    got = sorted((x.status, x.description) for x in rows(root) if x.kind != "baseline")
    assert got == [("interrupted", "wait a"), ("interrupted", "wait b")], got
    assert clean(root) and no_journals(root)
