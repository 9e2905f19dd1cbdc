"""Test-wide setup: a git identity for commits and one shared data cache per test session, and
the fixtures more than one test module uses (the plain helpers live in support.py).

The cache is shared so that the pysource corpus and its tokenizer are prepared once per
session (once per xdist worker), however many workspaces the tests make; it never touches the
user's ~/.cache. Last, the hooks that spread the tests over xdist's workers (scheduling.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

GROUPS_FOLDER = pytest.StashKey[Path]()


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    saved = dict(os.environ)
    os.environ.update({
        "AUTORESEARCH_CACHE_DIR": str(cache),
        "AUTORESEARCH_HOME": str(tmp_path_factory.mktemp("autoresearch-home")),
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost",
    })
    yield cache
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def data_cache(_isolated_environment) -> Path:
    """The session's AUTORESEARCH_CACHE_DIR (prepared data is reused across workspaces)."""
    return _isolated_environment


@pytest.fixture
def research_workspace(tmp_path) -> dict:
    """A recorded line of research in tmp_path/ws (support.make_research): {"root", "rows", "commits"}."""
    from support import make_research

    return make_research(tmp_path / "ws")


@pytest.fixture
def ws(tmp_path) -> Path:
    """A fake-LLM workspace (support.llm_like) on autoresearch/test with its baseline measured
    (val_bpb 1.0, twice); test modules with workspaces of their own define their own `ws`."""
    from support import experiment, llm_like

    root = tmp_path / "ws"
    llm_like(root)
    r = experiment(root, "baseline")
    assert r.returncode == 0, r.stdout + r.stderr
    return root


@pytest.fixture
def one_torch_thread():
    """Two cores shared with other work: one torch thread for the test, restored after."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def sleeper():
    """The pid of a live process that stands in for a running experiment or loop."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def api_env(monkeypatch):
    """Keys set and base URLs cleared, so the API agents talk to the loopback server only
    (modules of API-agent tests opt in with `pytestmark = pytest.mark.usefixtures("api_env")`)."""
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    from support import API_KEY

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)


@pytest.fixture
def llm():
    """A loopback server speaking the OpenAI and Anthropic protocols (fakes/llm_server.py)."""
    from fakes.llm_server import FakeLLM

    with FakeLLM() as server:
        yield server


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: a worker per core, at most four. Each real training run uses half the cores
    (profiles.cpu_threads), so more workers than cores would only slow every timed run."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 4))


# The tests of a group (the heavy ones, a module's xdist_group) on one worker, one after
# another: scheduling.py says why and how.

def pytest_configure(config) -> None:
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        from scheduling import folder_for_workers

        config.stash[GROUPS_FOLDER] = folder_for_workers()


def pytest_unconfigure(config) -> None:
    folder = config.stash.get(GROUPS_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    from scheduling import FOLDER

    node.workerinput[FOLDER] = str(node.config.stash[GROUPS_FOLDER])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "load" or GROUPS_FOLDER not in config.stash:
        return None  # another --dist asked for by hand: xdist's own
    from scheduling import GroupScheduling

    return GroupScheduling(config, log, config.stash[GROUPS_FOLDER])


def pytest_collection_modifyitems(config, items) -> None:
    """The slow tests first (heavy ones are slow too): a test of a minute handed out last would
    leave the other workers idle. The sort is stable: every worker collects one order."""
    items.sort(key=lambda item: not (item.get_closest_marker("heavy") or item.get_closest_marker("slow")))
    if hasattr(config, "workerinput"):
        from scheduling import FOLDER, write_groups

        if FOLDER in config.workerinput:
            write_groups(config.workerinput, items)
