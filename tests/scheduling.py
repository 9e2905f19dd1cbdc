"""Which xdist worker runs which test: the tests of one group on one worker, one after another.

The heavy tests (marked `heavy`: a real model trained, or compiled) are one group, so that no
two timed runs share the cores and a budget of seconds trains as it does alone; a module may
keep its tests together with `xdist_group(name)` (one Ray cluster at a time). Every other test
goes, one by one in collection order, to whichever worker is free.

xdist's own `--dist loadgroup` does this by writing the group into the test's node id, which
pytest 9.2 no longer lets a plugin change: there the groups are silently ignored. Only a worker
sees the markers and only the controller schedules, so each worker writes the groups of the
tests it collected into a folder the controller named, and `GroupScheduling` reads them when
it schedules, once every worker has collected.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from xdist.scheduler import LoadScopeScheduling

FOLDER = "autoresearch_groups_folder"  # the key of workerinput that names the folder


def folder_for_workers() -> Path:
    return Path(tempfile.mkdtemp(prefix="pytest-groups-"))


def group_of(item) -> str | None:
    if item.get_closest_marker("heavy"):
        return "heavy"
    named = item.get_closest_marker("xdist_group")
    return str(named.args[0] if named.args else named.kwargs["name"]) if named else None


def write_groups(workerinput: dict, items) -> None:
    """On a worker: {node id: group} of the tests it collected that have one."""
    groups = {item.nodeid: g for item in items if (g := group_of(item))}
    folder, worker = Path(workerinput[FOLDER]), workerinput["workerid"]
    part = folder / f".{worker}.json"
    part.write_text(json.dumps(groups))
    os.replace(part, folder / f"{worker}.json")  # whole or absent


class GroupScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with a scope per group and one per other test: the largest
    scopes go out first (the heavy tests start at once, on one worker), then the other tests
    one by one to whichever worker is free."""

    def __init__(self, config, log, folder: Path):
        super().__init__(config, log)
        self.folder = folder
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:  # first asked in schedule(), once every worker has collected
            self._groups = {}
            for f in sorted(self.folder.glob("gw*.json")):
                self._groups.update(json.loads(f.read_text()))
        return self._groups.get(nodeid, nodeid)
