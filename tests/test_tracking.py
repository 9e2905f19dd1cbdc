"""Every run in MLflow (`run --track mlflow`): one MLflow run per recorded row with its metric,
tags and artifacts, in a local store with no server, and through a real MLflow tracking server
started here; a tracker that is down never fails or stops the research: its runs wait in the
queue and go later (`autoresearch track`)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from support import cli, llm_like, rows
from test_loop import agent, loop  # noqa: F401  (agent: a fixture)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


def runs_of(uri: str) -> dict[int, object]:
    client = MlflowClient(tracking_uri=uri)
    found = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            found[int(run.data.tags["autoresearch_seq"])] = run
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_run_is_an_mlflow_run_with_its_metric_tags_and_artifacts(tmp_path, agent):  # noqa: F811
    root = tmp_path / "ws"
    llm_like(root, branch="")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**agent([{"value": 0.5, "desc": "VALUE 1.0 -> 0.5", "usage": {"tokens_in": 1200, "tokens_out": 80,
                                                                         "cost_usd": 0.01}},
                    {"value": 0.7, "desc": "VALUE 0.5 -> 0.7"}]), "MLFLOW_TRACKING_URI": uri}
    r = loop(root, agent, "--tag", "t1", "--max-experiments", "2", "--track", "mlflow", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    recorded = rows(root)
    assert f"tracking: every run goes to mlflow at {uri}" in r.stdout
    assert f"tracking: {len(recorded)} runs sent to mlflow this session, none queued" in r.stdout
    got = runs_of(uri)
    assert sorted(got) == list(range(len(recorded)))
    client = MlflowClient(tracking_uri=uri)
    for seq, row in enumerate(recorded):
        run = got[seq]
        assert client.get_experiment(run.info.experiment_id).name == "ws/autoresearch/t1"
        assert (run.data.tags["status"], run.data.tags["kind"], run.data.tags["commit"]) == (row.status, row.kind, row.commit)
        assert run.data.metrics["val_bpb"] == pytest.approx(row.value)
        assert run.data.metrics["steps"] == 10 and run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert [(m.step, m.value) for m in history] == [(1, 3.0)]  # the curve the trainer printed
        assert "run.log" in [a.path for a in client.list_artifacts(run.info.run_id)]
    win = next(got[i] for i, x in enumerate(recorded) if x.kind == "experiment" and x.description == "VALUE 1.0 -> 0.5")
    assert win.info.run_name == "#1 VALUE 1.0 -> 0.5" and win.data.tags["description"] == "VALUE 1.0 -> 0.5"
    assert (win.data.tags["tokens_in"], win.data.tags["cost_usd"]) == ("1200", "0.01")
    diff = client.download_artifacts(win.info.run_id, "diff.patch", str(tmp_path))
    assert "+VALUE = 0.5" in open(diff).read()
    # sending again sends nothing twice
    again = cli("track", cwd=root, env={"MLFLOW_TRACKING_URI": uri})
    assert again.returncode == 0 and "0 runs queued" in again.stdout and len(runs_of(uri)) == len(recorded)


def test_the_default_store_lies_outside_the_workspace(tmp_path, agent):  # noqa: F811
    root = tmp_path / "ws"
    llm_like(root, branch="")
    r = loop(root, agent, "--max-experiments", "0", env=agent([]))
    assert r.returncode == 0, r.stdout + r.stderr
    sent = cli("track", cwd=root, env={"MLFLOW_TRACKING_URI": ""})
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "2 runs queued for mlflow at sqlite:///" in sent.stdout and "mlflow ui --backend-store-uri" in sent.stdout
    uri = sent.stdout.split(" at ", 1)[1].split()[0]
    assert str(root) not in uri and len(runs_of(uri)) == 2
    assert not any(p.name.startswith(("mlruns", "mlartifacts", "mlflow")) for p in root.iterdir())


def test_a_tracker_that_is_down_never_stops_the_research_and_gets_the_runs_later(tmp_path, agent):  # noqa: F811
    root = tmp_path / "ws"
    llm_like(root, branch="")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"  # nothing listens there yet
    env = {**agent([{"value": 0.5, "desc": "VALUE 1.0 -> 0.5"}]), "MLFLOW_TRACKING_URI": uri}
    r = loop(root, agent, "--max-experiments", "1", "--track", "mlflow", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    recorded = rows(root)
    assert len(recorded) >= 3 and recorded[2].status == "keep"  # the research went on
    assert r.stdout.count("cannot take runs now") == 1  # said once
    assert f"tracking: {len(recorded)} runs queued for mlflow" in r.stdout
    # a real MLflow tracking server, on the port the runs were meant for
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--default-artifact-root", str(tmp_path / "server-artifacts"), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the MLflow server did not start"
                time.sleep(0.5)
        sent = cli("track", cwd=root, env={"MLFLOW_TRACKING_URI": uri})
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert f"{len(recorded)} runs queued for mlflow at {uri}" in sent.stdout
        got = runs_of(uri)
        assert sorted(got) == list(range(len(recorded)))
        assert got[2].data.metrics["val_bpb"] == pytest.approx(0.5)
    finally:
        server.terminate()
        server.wait(30)


def test_an_unknown_or_missing_tracker_is_one_line_before_anything_starts(tmp_path, agent):  # noqa: F811
    root = tmp_path / "ws"
    llm_like(root, branch="")
    r = loop(root, agent, "--max-experiments", "0", "--track", "tensorboard", env=agent([]))
    assert r.returncode != 0 and "unknown tracker 'tensorboard': use mlflow" in r.stderr
    assert not (root / "results.tsv").exists()  # no baseline ran


def test_a_send_cut_off_halfway_is_made_again_whole(tmp_path, agent):  # noqa: F811
    """The tracker went down between making a run and finishing it: the half-made run is not
    taken for a sent one; the next send deletes it and sends the row whole."""
    root = tmp_path / "ws"
    llm_like(root, branch="")
    assert loop(root, agent, "--max-experiments", "0", env=agent([])).returncode == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from autoresearch import pins

    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(f"ws/{rows(root)[0].branch}", artifact_location=(tmp_path / "a").as_uri())
    half = client.create_run(experiment, tags={"autoresearch_workspace": pins.private_dir(root).name,
                                               "autoresearch_sending": "0"}).info.run_id
    sent = cli("track", cwd=root, env={"MLFLOW_TRACKING_URI": uri})
    assert sent.returncode == 0, sent.stdout + sent.stderr
    got = runs_of(uri)
    assert sorted(got) == [0, 1] and half not in {r.info.run_id for r in got.values()}
    assert got[0].info.status == "FINISHED" and "val_bpb" in got[0].data.metrics
