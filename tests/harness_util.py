"""Helpers for tests that exercise the harness (prepare.py) directly."""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from pathlib import Path

from autoresearch import capsliterals
from autoresearch.workspace import template_text

_counter = itertools.count()


def write_harness(folder: Path, **values) -> Path:
    """The template prepare.py with some constants changed, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = template_text("llm", "prepare.py")
    if values:
        text = capsliterals.write_constants(text, values)
    path = folder / "prepare.py"
    path.write_text(text)
    return path


def import_harness(path: Path, cache_dir: Path, env: dict | None = None):
    """Import a prepare.py as a fresh module (its constants read the environment at import)."""
    old = dict(os.environ)
    os.environ["AUTORESEARCH_CACHE_DIR"] = str(cache_dir)
    os.environ.update(env or {})
    try:
        name = f"harness_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        os.environ.clear()
        os.environ.update(old)
