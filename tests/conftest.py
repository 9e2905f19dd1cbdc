"""Test-wide setup: a git identity for commits and one shared data cache per test session.

The cache is shared so that the pysource corpus and its tokenizer are prepared once per
session, however many workspaces the tests make; it never touches the user's ~/.cache.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    saved = dict(os.environ)
    os.environ.update({
        "AUTORESEARCH_CACHE_DIR": str(cache),
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
