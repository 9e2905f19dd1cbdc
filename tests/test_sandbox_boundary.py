"""The sandbox's edges, tried the way a hostile train.py or a careless setup would: what reaches a
run through its environment, what the host can read of it, whether a run can pass for a sandbox
that failed, whether one run can starve another, and whether the data a score is made of can be
read back from the Python installation or a dataset folder.

Runs through the real engine where the engine decides (support.llm_like: the stand-in harness,
fast), and through `sandbox.Sandbox.wrap` where only the jail is in question.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from autoresearch import bubblewrap, proc, sandbox, seatbelt
from support import clean, cli, experiment, experiment_json, head, llm_like, rows, train_text

ON = sandbox.detect()
needs_sandbox = pytest.mark.skipif(not ON.on, reason=f"no sandbox here: {ON.why}")


def printed(root: Path, tag: str) -> dict:
    line = next(x for x in (root / "run.log").read_text().splitlines() if x.startswith(tag + " "))
    return json.loads(line[len(tag) + 1:])


@needs_sandbox
def test_the_run_gets_the_environment_it_needs_and_nothing_else(ws):
    """A DATABASE_URL with a password (not shaped like a key) never reaches the run or its log;
    locale and thread settings do."""
    password = "pw-" + uuid.uuid4().hex
    body = "import json, os\nprint('ENV ' + json.dumps(dict(os.environ)))\n"
    (ws / "train.py").write_text(train_text(value=2.0, body=body))
    r = cli("experiment", "-d", "reads its environment", cwd=ws,
            env={"DATABASE_URL": f"postgres://user:{password}@db.internal/prod", "OMP_NUM_THREADS": "1",
                 "LC_ALL": "C.UTF-8", "SOME_TOOL_HOME": "/opt/tool", "GIT_DIR": "/elsewhere"})
    assert r.returncode == 0, r.stderr
    env = printed(ws, "ENV")
    assert password not in (ws / "run.log").read_text()
    assert "DATABASE_URL" not in env and "SOME_TOOL_HOME" not in env and "GIT_DIR" not in env
    # nothing in front of bubblewrap adds variables (bubblewrap itself sets PWD to where the run starts)
    assert "SHLVL" not in env and env.get("PWD", "/workspace") == "/workspace"
    assert env["OMP_NUM_THREADS"] == "1" and env["LC_ALL"] == "C.UTF-8"
    assert env["HOME"] == "/scratch/home" and env["AUTORESEARCH_CACHE_DIR"] == "/data"


def _bwrap_cmdlines() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name == "bwrap" and b"/workspace" in argv:
            found.append(" ".join(a.decode(errors="replace") for a in argv))
    return found


@needs_sandbox
def test_no_value_of_the_runs_environment_is_on_the_hosts_process_list(ws):
    """Every user of the host can read a process's command line: the sandbox program gets the
    run's environment as its own, never as --setenv arguments."""
    zone = "Needle/" + uuid.uuid4().hex[:8]
    body = "import os, time\nprint('TZ ' + '\"' + os.environ.get('TZ', '') + '\"', flush=True)\ntime.sleep(3)\n"
    (ws / "train.py").write_text(train_text(value=2.0, body=body))
    started = subprocess.Popen([sys.executable, "-m", "autoresearch", "experiment", "-d", "sleeps"], cwd=ws,
                               env={**os.environ, "TZ": zone}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline and started.poll() is None:
        seen = _bwrap_cmdlines()
        time.sleep(0.05)
    started.communicate(timeout=120)
    assert seen, "the sandbox program was never seen running"
    assert printed(ws, "TZ") == zone  # the run did get it
    for line in seen:
        assert zone not in line and "--setenv" not in line and "/runs/" not in line, line


@needs_sandbox
def test_a_trainer_that_prints_what_a_failing_sandbox_prints_is_its_own_crash(ws):
    """Whether the sandbox came up is told by a pipe the jail closes before train.py starts: a
    train.py that imitates bubblewrap's error is a crash of the code, and is marked as run."""
    frontier = head(ws)
    body = ("import sys\nprint('bwrap: Creating new namespace failed: Operation not permitted', flush=True)\n"
            "sys.exit(1)\n")
    (ws / "train.py").write_text(train_text(value=0.5, body=body))
    r = experiment(ws, "pretends")
    assert r.returncode == 0, r.stderr
    last = rows(ws)[-1]
    assert last.status == "crash" and not last.reason.startswith("machine failure"), last.reason
    assert head(ws) == frontier and clean(ws)
    (ws / "train.py").write_text(train_text(value=0.5, body=body))  # the same code again: already ran
    assert experiment_json(ws, "pretends again")["status"] == "noop"


@pytest.mark.skipif(os.geteuid() != 0 or ON.kind != sandbox.BUBBLEWRAP, reason="a root engine with bubblewrap")
def test_a_run_that_exhausts_its_process_cap_does_not_stop_another_from_starting_threads(tmp_path, monkeypatch):
    """Each run of a root engine has a uid of its own, so the per-uid process cap of one run is
    not shared with a run beside it."""
    monkeypatch.setattr(sandbox, "MAX_PROCESSES", 40)
    jail = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False)
    hog = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n"
           "            os._exit(0)\n        n += 1\nexcept OSError:\n    print('HOG', n, flush=True)\n    time.sleep(30)\n")
    threads = ("import threading\nts = [threading.Thread(target=lambda: None) for _ in range(20)]\n"
               "[t.start() for t in ts]\n[t.join() for t in ts]\nprint('THREADS OK')\n")
    with sandbox.leased(ON) as first, sandbox.leased(ON) as second:
        assert first.uid != second.uid and {first.uid, second.uid} <= set(sandbox.RUN_UIDS)
        hogging = subprocess.Popen(first.wrap([sys.executable, "-c", hog], jail), stdout=subprocess.PIPE, text=True,
                                   env=jail.env, start_new_session=True)
        try:
            assert hogging.stdout.readline().startswith("HOG")  # its cap is reached
            other = proc.run(second.wrap([sys.executable, "-c", threads], jail), check=False, timeout=60, env=jail.env)
            assert "THREADS OK" in other.stdout, other.stderr
        finally:
            proc.kill_group(hogging.pid, hogging)


@pytest.mark.skipif(ON.kind != sandbox.BUBBLEWRAP, reason="needs bubblewrap")
def test_a_masked_folder_of_the_python_installation_is_empty_inside(tmp_path):
    """pysource's validation documents come from test folders of the Python installation, which
    the jail binds read-only: masked, they are there but empty; the rest is intact."""
    import email

    folder = Path(email.__file__).parent  # a package of the standard library
    jail = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False, masked=(folder,))
    probe = f"import os, json\nprint(json.dumps(os.listdir({str(folder)!r})))"
    r = proc.run(ON.wrap([sys.executable, "-c", probe], jail), check=False, timeout=60, env=jail.env)
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stderr
    bare = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False)
    r = proc.run(ON.wrap([sys.executable, "-c", probe], bare), check=False, timeout=60, env=bare.env)
    assert "__init__.py" in json.loads(r.stdout)


def test_pysource_takes_validation_only_from_test_folders_it_names(tmp_path):
    """The split the engine masks: every validation document is a file of a test folder the
    manifest will list, and no listed folder is imported by a plain `import torch`."""
    from harness_util import import_harness, write_harness

    harness = import_harness(write_harness(tmp_path, DATASET="pysource", MAX_TRAIN_CHARS=200_000,
                                           MAX_VAL_CHARS=50_000), tmp_path / "cache")
    train, val, sources = harness.pysource_documents()
    assert val and train and sources
    assert all(Path(s).name in harness.TEST_FOLDERS and Path(s).is_dir() for s in sources)
    texts = set()
    for s in sources:
        texts.update(p.read_text(encoding="utf-8", errors="replace") for p in Path(s).rglob("*.py"))
    assert all(v in texts or any(v in t for t in texts) for v in val)  # _take may cut the last one
    loaded = subprocess.run([sys.executable, "-c", "import sys, torch, numpy; print('\\n'.join(m.__file__ or '' "
                             "for m in list(sys.modules.values()) if getattr(m, '__file__', None)))"],
                            capture_output=True, text=True, timeout=300).stdout.splitlines()
    assert not [f for f in loaded if any(f.startswith(s + os.sep) for s in sources)]


@needs_sandbox
@pytest.mark.skipif(ON.kind != sandbox.BUBBLEWRAP or not os.access("/usr/local/share", os.W_OK),
                    reason="bubblewrap, /usr/local/share writable")
def test_a_files_dataset_folder_is_never_visible_to_the_trainer(ws):
    """files:PATH under /opt, which the jail binds for the system's programs: the manifest names
    the folder and the trainer finds it empty."""
    from autoresearch import preparing
    from autoresearch.workspace import Workspace

    prepared = preparing.prepared_dir(Workspace.load(ws))
    folder = Path("/opt") / f"autoresearch-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        (folder / "secret-validation.txt").write_text("the validation text\n")
        (prepared / "manifest.json").write_text(json.dumps({"val_sources": [str(folder)]}))
        body = f"import os, json\nprint('SEES ' + json.dumps(os.listdir({str(folder)!r}) if os.path.isdir({str(folder)!r}) else None))\n"
        (ws / "train.py").write_text(train_text(value=2.0, body=body))
        assert experiment(ws, "looks for the data").returncode == 0
        assert printed(ws, "SEES") in ([], None)
    finally:
        (prepared / "manifest.json").write_text("")
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def test_every_start_says_whether_training_is_sandboxed_and_why_not(tmp_path):
    root = tmp_path / "ws"
    llm_like(root)
    r = cli("experiment", "-d", "baseline", cwd=root, env={sandbox.OFF: "off"})
    assert r.stdout.splitlines()[0] == f"sandbox: none, training runs unsandboxed ({sandbox.OFF}=off)"
    if ON.on:
        r = cli("experiment", "-d", "again", cwd=root)
        assert r.stdout.splitlines()[0].startswith(f"sandbox: {ON.kind} (")


def test_an_unsandboxed_run_is_pointed_at_the_engines_data_cache(tmp_path, monkeypatch):
    """Without a sandbox the run still gets a fresh HOME of its own; the harness would then look
    for the data under that HOME unless the run is told where the engine's cache is (the
    default ~/.cache/autoresearch, when AUTORESEARCH_CACHE_DIR is not set)."""
    from autoresearch.engine.runner import Stage
    from autoresearch.workspace import Workspace

    ws = llm_like(tmp_path / "ws")
    monkeypatch.delenv("AUTORESEARCH_CACHE_DIR", raising=False)
    cache = tmp_path / "home" / ".cache" / "autoresearch"
    stage = Stage(Workspace.load(ws.root), sandbox.Sandbox("", "off"), ws.pins, tmp_path / "scratch",
                  tmp_path / "scratch" / "work", cache / "prepared" / "key", None)
    env = stage.inside_env()
    assert env["AUTORESEARCH_CACHE_DIR"] == str(cache)
    assert env["HOME"] == str(tmp_path / "scratch" / "home")


@needs_sandbox
def test_the_up_signal_works_whatever_descriptor_number_the_pipe_gets():
    """The engine may hold many files open (a pool, a dashboard): the pipe's number is then far
    above 9, which a POSIX shell could not redirect."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(40)]
    try:
        jail = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False)
        with sandbox.UpSignal() as up:
            assert up.write_fd > 9
            done = subprocess.run(ON.wrap([sys.executable, "-c", "print('ran')"], jail, up), env=jail.env,
                                  pass_fds=up.pass_fds, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0 and done.stdout.strip() == "ran", done.stderr
            assert up.started()
        with sandbox.UpSignal() as up:  # the jail failed before the command: no signal
            broken = sandbox.Jail(binds=(sandbox.Bind(Path("/nonexistent-source"), Path("/x")),), cwd=Path("/"),
                                  env={"PATH": "/usr/bin:/bin"}, gpus=False)
            done = subprocess.run(ON.wrap([sys.executable, "-c", "print('ran')"], broken, up), env=broken.env,
                                  pass_fds=up.pass_fds, capture_output=True, text=True, timeout=60)
            assert done.returncode != 0 and not up.started()
    finally:
        for fd in held:
            os.close(fd)


@pytest.mark.skipif(ON.kind != sandbox.BUBBLEWRAP, reason="needs bubblewrap")
def test_pysource_masks_the_test_folders_of_every_python_installation_in_view(tmp_path):
    """The same package's tests may sit in the base interpreter's site-packages or under
    /usr/lib/python3: every test folder the jail would show is empty to the trainer."""
    from dataclasses import replace as with_
    from autoresearch.engine.runner import Stage

    ws = llm_like(tmp_path / "ws")
    ws = with_(ws, config=with_(ws.config, dataset="pysource"))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    stage = Stage.make(ws, head(ws.root), scratch, ON)
    every = sandbox.test_folders(sandbox.python_roots(stage._hidden()))
    assert every and set(every) <= set(stage.val_sources())
    jail = stage.trainer_jail()
    probe = ("import json, os, sys\nfolders = json.loads(sys.argv[1])\n"
             "print(json.dumps({f: os.listdir(f) for f in folders if os.path.isdir(f) and os.listdir(f)}))")
    sample = [str(p) for p in every[:: max(1, len(every) // 40)]]
    r = proc.run(ON.wrap([sys.executable, "-c", probe, json.dumps(sample)], jail), check=False, timeout=60, env=jail.env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {}


@pytest.mark.skipif(ON.kind != sandbox.BUBBLEWRAP, reason="needs bubblewrap")
def test_the_evaluator_has_a_home_of_its_own_and_no_kernel_cache(tmp_path):
    """What the trainer leaves in its home (a kernel in ~/.cache/torch/kernels) is never in the
    evaluator's, which also runs with PyTorch's and CUDA's kernel caches off."""
    from autoresearch.engine.runner import Stage

    ws = llm_like(tmp_path / "ws")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    stage = Stage.make(ws, head(ws.root), scratch, ON)
    trainer = stage.trainer_jail()
    plant = "import os, pathlib\np = pathlib.Path(os.environ['HOME'], '.cache/torch/kernels'); p.mkdir(parents=True); (p / 'k').write_text('x')"
    assert proc.run(ON.wrap([sys.executable, "-c", plant], trainer), check=False, timeout=60, env=trainer.env).returncode == 0
    sandbox.prepare_folder(scratch / "record", stage.box.owner())  # as the runner makes it
    evaluator = stage.evaluator_jail(tmp_path / "record.json")
    look = "import os, json\nprint(json.dumps([os.listdir(os.environ['HOME']), os.environ.get('USE_PYTORCH_KERNEL_CACHE'), os.environ.get('CUDA_CACHE_DISABLE')]))"
    r = proc.run(ON.wrap([sys.executable, "-c", look], evaluator), check=False, timeout=60, env=evaluator.env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [[], "0", "1"]


@pytest.mark.skipif(os.geteuid() != 0 or ON.kind != sandbox.BUBBLEWRAP, reason="a root engine with bubblewrap")
def test_a_uid_that_belongs_to_someone_is_never_leased(monkeypatch):
    monkeypatch.setattr(sandbox, "RUN_UIDS", range(0, 1))  # root's own
    with pytest.raises(sandbox.AutoresearchError, match="no free uid"):
        with sandbox.leased(ON):
            pass
    folder = sandbox._lease_folder()
    st = os.lstat(folder)
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0 and not folder.is_symlink()


def test_seatbelt_denies_the_masked_folders_but_allows_the_binds_inside_them(tmp_path):
    cache = tmp_path / "cache"
    (cache / "prepared").mkdir(parents=True)
    train = cache / "prepared" / "train.bin"
    train.write_bytes(b"")
    jail = sandbox.Jail(binds=(sandbox.Bind(train, train),), cwd=Path("/"), masked=(cache,))
    rules = seatbelt.profile(jail, sandbox.python_dirs()).splitlines()
    deny = next(i for i, r in enumerate(rules) if r.startswith("(deny file-read*") and str(cache.resolve()) in r)
    allow = next(i for i, r in enumerate(rules) if r.startswith("(allow file-read*") and str(train.resolve()) in r)
    assert allow > deny  # the last matching rule wins: the training file stays readable


@pytest.mark.skipif(ON.kind != sandbox.BUBBLEWRAP or not os.access("/usr/local/share", os.W_OK),
                    reason="bubblewrap, /usr/local/share writable")
def test_a_hub_datasets_downloaded_validation_shard_is_never_visible_to_the_trainer(tmp_path):
    """climbmix and tinystories keep their downloaded shards in the data cache (CACHE_DIR/data):
    with the cache under a folder the jail binds (/usr), the trainer still finds it empty, and
    sees only the training files it is given at /data."""
    from autoresearch.engine.runner import Stage

    ws = llm_like(tmp_path / "ws")
    cache = Path("/usr/local/share") / f"autoresearch-test-cache-{uuid.uuid4().hex[:8]}"
    prepared = cache / "prepared" / "climbmix-key"
    try:
        (cache / "data" / "climbmix" / "val").mkdir(parents=True)
        (cache / "data" / "climbmix" / "val" / "00000.parquet").write_bytes(b"validation shard")
        prepared.mkdir(parents=True)
        for name in ("train.bin", "train.idx.npy", "val.bin", "val.idx.npy"):
            (prepared / name).write_bytes(b"")
        (prepared / "manifest.json").write_text(json.dumps({"val_sources": [str(cache)]}))
        scratch = tmp_path / "scratch"
        for folder in ("work", "home", "handover", "cache"):
            (scratch / folder).mkdir(parents=True)
        stage = Stage(ws, ON, ws.pins, scratch, scratch / "work", prepared, None)
        jail = stage.trainer_jail()
        probe = (f"import os, json\nprint(json.dumps([os.listdir({str(cache)!r}), "
                 f"sorted(os.listdir('/data/prepared/climbmix-key'))]))")
        r = proc.run(ON.wrap([sys.executable, "-c", probe], jail), check=False, timeout=60, env=jail.env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == [[], ["manifest.json", "train.bin", "train.idx.npy"]]
    finally:
        import shutil

        shutil.rmtree(cache, ignore_errors=True)


def probe_exists(jail: sandbox.Jail, *paths: Path) -> list[bool]:
    """Whether each path exists as seen from inside `jail` (a folder counts only with something in it)."""
    probe = ("import os, json, sys\n"
             "print(json.dumps([os.path.isfile(p) or (os.path.isdir(p) and bool(os.listdir(p))) for p in sys.argv[1:]]))")
    r = proc.run(ON.wrap([sys.executable, "-c", probe, *map(str, paths)], jail), check=False, timeout=60, env=jail.env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_sandbox
def test_only_the_python_installations_own_folders_of_the_import_path_are_bound(tmp_path, monkeypatch):
    """`python -m autoresearch` from a project folder puts that folder on the import path, and so
    does PYTHONPATH: a secret there (a .env) is not the Python installation and is not bound."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("AWS_SECRET_ACCESS_KEY=not-for-the-run\n")
    monkeypatch.setattr(sys, "path", [str(project), *sys.path])
    dirs = sandbox.python_dirs()
    assert project not in dirs
    import autoresearch
    assert any(d == Path(autoresearch.__file__).resolve().parent.parent or d in Path(autoresearch.__file__).resolve().parents
               for d in dirs)  # the evaluator imports it inside
    jail = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False)
    assert probe_exists(jail, project / ".env", Path(autoresearch.__file__)) == [False, True]


@needs_sandbox
def test_a_hidden_folder_inside_a_bound_system_folder_is_empty_inside(tmp_path):
    """The workspace, the engine's folder and the data cache are hidden wherever they lie: under
    /usr, which is bound for the system's programs, they are shown empty."""
    share = Path("/usr/share")
    shown = sorted(p for p in share.iterdir() if p.is_dir() and not p.is_symlink() and any(p.iterdir())) if share.is_dir() else []
    if not shown:
        pytest.skip("no folder under /usr/share here")
    folder = shown[0]  # stands for a workspace that lies under /usr
    assert "/usr" in bubblewrap.SYSTEM_DIRS
    jail = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False, hidden=(folder,))
    bare = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False)
    assert probe_exists(bare, folder) == [True]
    assert probe_exists(jail, folder) == [False]


@needs_sandbox
def test_opt_is_not_bound(tmp_path):
    """/opt may hold a wheelhouse or a package mirror: copies of the test files pysource validates on."""
    try:
        folder = Path(tempfile.mkdtemp(prefix="autoresearch-test-", dir="/opt"))
        folder.chmod(0o755)  # readable by the run's own uid, as a wheelhouse is
    except OSError:
        pytest.skip("/opt is not writable here")
    try:
        (folder / "tests_copy.py").write_text("validation = True\n")
        jail = sandbox.Jail(binds=(), cwd=Path("/"), env={"PATH": "/usr/bin:/bin"}, gpus=False)
        assert probe_exists(jail, folder / "tests_copy.py") == [False]
    finally:
        shutil.rmtree(folder)


def test_a_python_bundled_by_another_program_under_usr_has_its_test_folders_masked(tmp_path, monkeypatch):
    """pysource masks the test folders of every Python installation the jail shows: one that a
    program bundles deep under /usr (a cloud SDK's, lib/python3.12) is one of them."""
    usr = tmp_path / "usr"
    tests_folder = usr / "lib" / "some-sdk" / "platform" / "bundled" / "lib" / "python3.12" / "site-packages" / "pkg" / "tests"
    tests_folder.mkdir(parents=True)
    (tests_folder / "test_pkg.py").write_text("def test_it():\n    assert True\n")
    monkeypatch.setattr(bubblewrap, "SYSTEM_DIRS", (str(usr),))
    sandbox.system_pythons.cache_clear()
    try:
        assert tests_folder.parents[2] in sandbox.python_roots()
        assert tests_folder in sandbox.test_folders(sandbox.python_roots())
    finally:
        sandbox.system_pythons.cache_clear()
