"""Hub datasets, downloaded for real over HTTP from a loopback server speaking the hub's URL layout."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness_util import write_harness


class Hub:
    """Serves files from a dict {url path: bytes}; `fail_once` paths answer 500 the first time."""

    def __init__(self, files: dict[str, bytes], fail_once=()):
        self.files, self.fail_once, self.requests = files, set(fail_once), []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hub.requests.append(self.path)
                if self.path in hub.fail_once:
                    hub.fail_once.discard(self.path)
                    self.send_error(500)
                    return
                body = hub.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def shard(tmp_path: Path, name: str, texts: list[str]) -> bytes:
    path = tmp_path / name
    pq.write_table(pa.table({"text": texts}), path)
    return path.read_bytes()


def texts(n, tag):
    return [f"{tag} document {i}: the quick brown fox {i * 7} jumps over the lazy dog. " * 5 for i in range(n)]


def run_prepare(folder, cache, endpoint):
    env = {**os.environ, "AUTORESEARCH_CACHE_DIR": str(cache), "HF_ENDPOINT": endpoint}
    return subprocess.run([sys.executable, "prepare.py", "--json"], cwd=folder, capture_output=True, text=True, env=env)


def test_climbmix_shards_download_with_a_retry_and_the_last_shard_is_validation(tmp_path):
    base = "/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
    files = {
        f"{base}/shard_00000.parquet": shard(tmp_path, "a.parquet", texts(30, "train0")),
        f"{base}/shard_00001.parquet": shard(tmp_path, "b.parquet", texts(30, "train1")),
        f"{base}/shard_06542.parquet": shard(tmp_path, "v.parquet", texts(10, "val")),
    }
    hub = Hub(files, fail_once=[f"{base}/shard_00001.parquet"])
    try:
        path = write_harness(tmp_path / "ws", DATASET="climbmix", NUM_TRAIN_SHARDS=2, VOCAB_SIZE=300)
        result = run_prepare(path.parent, tmp_path / "cache", hub.url)
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["train_documents"] == 60 and record["val_documents"] == 10
    assert hub.requests.count(f"{base}/shard_00001.parquet") == 2  # failed once, retried
    data = tmp_path / "cache" / "data" / "climbmix"
    assert sorted(p.name for p in data.rglob("*.parquet")) == ["00000.parquet", "00000.parquet", "00001.parquet"]
    assert not list(data.rglob("*.part"))


def test_tinystories_uses_the_hub_parquet_api(tmp_path):
    base = "/api/datasets/roneneldan/TinyStories/parquet/default"
    files = {
        f"{base}/train/0.parquet": shard(tmp_path, "t.parquet", texts(40, "story")),
        f"{base}/validation/0.parquet": shard(tmp_path, "v.parquet", texts(8, "valstory")),
    }
    hub = Hub(files)
    try:
        path = write_harness(tmp_path / "ws", DATASET="tinystories", NUM_TRAIN_SHARDS=1, VOCAB_SIZE=300)
        result = run_prepare(path.parent, tmp_path / "cache", hub.url)
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["val_documents"] == 8


def test_no_network_is_one_clear_line_and_nothing_looks_complete(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_harness(tmp_path / "ws", DATASET="climbmix", NUM_TRAIN_SHARDS=1)
    result = subprocess.run(
        [sys.executable, "-c", "import prepare; prepare._download.__defaults__ = (2,); prepare.main()"],
        cwd=path.parent, capture_output=True, text=True,
        env={**os.environ, "AUTORESEARCH_CACHE_DIR": str(tmp_path / "cache"), "HF_ENDPOINT": f"http://127.0.0.1:{port}"},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot download") and "no network" in lines[0]
    cache = tmp_path / "cache"
    assert not list(cache.rglob("*.parquet")) and not list(cache.rglob("*.part")) and not list(cache.rglob("manifest.json"))


def test_a_missing_shard_is_an_error_not_a_retry_loop(tmp_path):
    hub = Hub({})
    try:
        path = write_harness(tmp_path / "ws", DATASET="climbmix", NUM_TRAIN_SHARDS=1)
        result = run_prepare(path.parent, tmp_path / "cache", hub.url)
    finally:
        hub.close()
    assert result.returncode == 1 and "HTTP 404" in result.stderr
    assert len(hub.requests) <= 2  # one per file, no retries on 404
