"""MLflow: one MLflow run per recorded row, in one MLflow experiment per research line.

Where: MLFLOW_TRACKING_URI when it is set (a tracking server, a database, a folder), else an
SQLite store beside the engine's own records (outside the workspace, which the agent edits),
with its artifacts in a folder beside it; `mlflow ui --backend-store-uri URI` shows it.

Each run: the metric, the seconds (whole run, training, evaluator, engine), steps and memory
as metrics; the training curve as the metric history of `train_loss`; status, reason, kind,
commit, worker, agent, the description and the agent's token cost as tags; the diff and the
run's log as artifacts. Its tags `autoresearch_workspace` (the workspace's key) and
`autoresearch_seq` (the row's place in the ledger), set once the run is whole, make a second
send of the same row a no-op; a send cut off halfway (tagged `autoresearch_sending` only) is
deleted and made again.
"""

from __future__ import annotations

import logging
import os

from autoresearch import pins
from autoresearch.research.history import parse_time
from autoresearch.tracking import Item, Tracker, TrackerDown, TrackerRefused

# a tracker that is down must answer quickly: MLflow's client retries for minutes by default
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

STATUS = {"crash": "FAILED", "interrupted": "KILLED"}  # MLflow's run status; FINISHED otherwise
SECONDS = ("seconds", "training_seconds", "eval_seconds", "engine_seconds")
REFUSED = ("INVALID_PARAMETER_VALUE",)  # about the row's own values, not the tracker


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, ws):
        super().__init__(ws)
        for name in ("mlflow", "alembic"):  # their notes (creating tables, migrating) are not the user's business
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow import MlflowClient

        given = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        local = pins.private_dir(ws.root)
        self.uri = given or f"sqlite:///{local / 'mlflow.db'}"
        # a local store keeps its artifacts beside it; a server decides for itself
        self.artifacts = None if given else (local / "mlflow-artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiments: dict[str, str] = {}
        self.workspace = local.name  # this workspace's key: two workspaces of one name never mix

    def where(self) -> str:
        return self.uri

    def hint(self) -> str:
        return f"see them: mlflow ui --backend-store-uri {self.uri}" if self.uri.startswith("sqlite:") else ""

    def _experiment(self, name: str) -> str:
        if name not in self.experiments:
            found = self.client.get_experiment_by_name(name)
            if found is not None and found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)  # someone deleted it: the line goes on in it
            self.experiments[name] = found.experiment_id if found is not None else \
                self.client.create_experiment(name, artifact_location=self.artifacts)
        return self.experiments[name]

    def send(self, item: Item) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._send(item)
        except MlflowException as exc:
            if exc.error_code in REFUSED:  # this row can never go in as it is: the next ones still can
                raise TrackerRefused(str(exc)) from exc
            raise TrackerDown(str(exc)) from exc
        except OSError as exc:  # a connection refused or reset, a folder that cannot be written
            raise TrackerDown(str(exc)) from exc

    def _send(self, item: Item) -> None:
        r = item.row
        experiment = self._experiment(f"{item.workspace}/{r.branch or 'main'}")
        mine = f"tags.autoresearch_workspace = '{self.workspace}'"
        if self.client.search_runs([experiment], filter_string=f"{mine} and tags.autoresearch_seq = '{item.seq}'",
                                   max_results=1):
            return  # sent whole before (the mark was not moved: the engine stopped right then)
        for half in self.client.search_runs([experiment], filter_string=f"{mine} and tags.autoresearch_sending = "
                                                                        f"'{item.seq}'"):
            self.client.delete_run(half.info.run_id)  # a send cut off halfway: made again below
        end = int(1000 * (parse_time(r.timestamp) or 0)) or None
        start = end - int(1000 * (r.seconds or 0)) if end else None
        tags = {"autoresearch_workspace": self.workspace, "autoresearch_sending": str(item.seq), "status": r.status,
                "kind": r.kind, "commit": r.commit, "branch": r.branch, "reason": r.reason, "cause": r.cause,
                "worker": r.worker, "agent": r.agent, "description": r.description,  # plain text: never a note, which
                # MLflow's page renders as markdown (the description is the agent's)
                "sandboxed": "" if r.sandboxed is None else str(r.sandboxed).lower(),
                **{k: str(getattr(r, k)) for k in ("tokens_in", "tokens_out", "cost_usd") if getattr(r, k) is not None}}
        run = self.client.create_run(experiment, start_time=start, tags={k: v for k, v in tags.items() if v},
                                     run_name=item.title())
        try:
            self._fill(run.info.run_id, item, end or start or 0, end)
        except Exception as exc:
            if getattr(exc, "error_code", "") in REFUSED:  # skipped for good: leave no half-made run behind
                self.client.delete_run(run.info.run_id)
            raise

    def _fill(self, run_id: str, item: Item, at: int, end: int | None) -> None:
        from mlflow.entities import Metric

        r = item.row
        metrics = [Metric(k, float(getattr(r, k)), at, 0) for k in (*SECONDS, "steps", "memory_gb")
                   if getattr(r, k) is not None]
        if r.measured:
            metrics.append(Metric(item.metric, r.value, at, 0))
        metrics += [Metric("train_loss", loss, at, step) for step, loss in item.curve]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=metrics[i:i + 1000])
        if item.diff:
            self.client.log_text(run_id, item.diff, "diff.patch")
        if item.log:
            self.client.log_text(run_id, item.log, "run.log")
        self.client.set_terminated(run_id, STATUS.get(r.status, "FINISHED"), end_time=end)
        # last: only a run sent whole carries the tag that says it was sent
        self.client.set_tag(run_id, "autoresearch_seq", str(item.seq))
        self.client.delete_tag(run_id, "autoresearch_sending")


__all__ = ["MlflowTracker"]
