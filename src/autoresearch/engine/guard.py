"""The guard: what a change may touch, and whether its code already ran.

Before a run: the change against the frontier may touch only the editable files (and the
agent's notes, which survive every reset and are never scored); the harness must match its
fingerprint; code whose editable files are identical to code that already ran is not run
again (`seen.json`, keyed by the content of the editable files). During a run: results.tsv
and every tracked file outside the editable set must come out as they went in
(`RunSnapshot`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from autoresearch import gitrepo
from autoresearch.files import atomic_write
from autoresearch.research import keeprule
from autoresearch.research.history import History
from autoresearch.research.results import Row
from autoresearch.state import STATE_DIR, SeenEntry
from autoresearch.workspace import Workspace

# crash reasons that say the code never finished, or failed for reasons of the machine's
NOT_RUN = ("interrupted", "not recorded", "engine error", "machine failure")


def counts_as_run(row: Row) -> bool:
    """Whether a row says its code ran to an answer (so it need not run again)."""
    if row.status in ("keep", "discard", "stale"):
        return True
    return row.status == "crash" and not row.reason.startswith(NOT_RUN)


def seen_entry(row: Row) -> SeenEntry:
    return SeenEntry(row.commit[:7], row.status, row.value, row.reason)


@dataclass(frozen=True)
class RunSnapshot:
    """What a run must leave as it found: results.tsv's bytes, and each protected tracked file's sha256."""

    results: bytes | None
    tracked: dict[str, str]
    watch_results: bool = True


class Guard:
    def __init__(self, ws: Workspace):
        self.ws = ws
        self.cfg = ws.config
        self.root = ws.root

    # -- what may change -----------------------------------------------------------

    def engine_files(self) -> list[str]:
        """Untracked files that stay when the rest go before a run: the engine's own outputs,
        its state folder (the agents' files live there too) and the notes."""
        return ["results.tsv", "run.log", "progress.png", "report.md", STATE_DIR + "/", *self.protected()]

    def clean(self) -> list[str]:
        """Remove every untracked and ignored file but the engine's own: nothing planted in the
        workspace (a .pyc, a package hidden by .git/info/exclude) outlives the change that made it."""
        return gitrepo.clean_untracked(self.root, keep=self.engine_files())

    def protected(self) -> list[str]:
        """Files that survive every reset: the agent's notes."""
        return [self.cfg.notes] if self.cfg.notes else []

    def is_editable(self, path: str) -> bool:
        for name in self.cfg.editable:
            name = name.rstrip("/")
            if path == name or path.startswith(name + "/"):
                return True
        return False

    def dirty(self) -> list[str]:
        """Uncommitted changes, the notes file aside."""
        return [p for p in gitrepo.changes(self.root) if p not in self.protected()]

    def changed(self, frontier: str) -> list[str]:
        """Paths the working tree changed against the frontier, the notes aside."""
        return [p for p in gitrepo.changed_since(self.root, frontier) if p not in self.protected()]

    def violation(self, changed: list[str]) -> str:
        """Why a change may not run ("" when it may): files outside the editable set, or a
        harness that does not match its fingerprint."""
        links = [p for p in (*changed, *self.protected()) if (self.root / p).is_symlink()]
        if links:
            return f"{links[0]} is a link: editable files and the notes must be regular files"
        outside = [p for p in changed if not self.is_editable(p)]
        if outside:
            more = " …" if len(outside) > 5 else ""
            return f"changed files outside the editable set: {', '.join(outside[:5])}{more}"
        if self.cfg.harness_files and not self.ws.harness_ok():
            return f"{', '.join(self.cfg.harness_files)} does not match the workspace fingerprint"
        return ""

    def reset(self, commit: str) -> None:
        gitrepo.reset_hard(self.root, commit, keep=self.protected())

    def smaller(self, frontier: str, candidate: str) -> bool:
        """Whether the candidate has fewer lines of code in its editable files than the frontier."""
        before = after = 0
        for name in self.cfg.editable:
            before += keeprule.code_lines(gitrepo.show(self.root, frontier, name) or "")
            after += keeprule.code_lines(gitrepo.show(self.root, candidate, name) or "")
        return after < before

    # -- code that already ran ---------------------------------------------------------

    def content_key(self, commit: str) -> str:
        """A fingerprint of the editable files' content at `commit`."""
        listing = gitrepo.tree_listing(self.root, commit, self.cfg.editable)
        return hashlib.sha256(listing.encode()).hexdigest()

    def seen(self, history: History) -> dict[str, SeenEntry]:
        """Code that already ran, by content key; rebuilt from the rows when the file is gone."""
        seen = self.ws.state.seen()
        if seen is not None:
            return seen
        seen = {}
        for r in history.rows:
            if not counts_as_run(r) or r.commit[:7] in {v.commit for v in seen.values()}:
                continue
            sha = gitrepo.resolve(self.root, r.commit)
            if sha:
                seen.setdefault(self.content_key(sha), seen_entry(r))
        self.ws.state.write_seen(seen)
        return seen

    def remember(self, key: str, row: Row) -> None:
        if not counts_as_run(row):
            return
        seen = self.ws.state.seen() or {}
        seen[key] = seen_entry(row)
        self.ws.state.write_seen(seen)

    # -- during a run --------------------------------------------------------------------

    def snapshot(self, *, results: bool = True) -> RunSnapshot:
        """The protected files before a run; without `results`, results.tsv is not watched (a pool's
        driver rewrites it while its workers run)."""
        tracked = {}
        for name in gitrepo.tracked(self.root):
            if self.is_editable(name) or name in self.protected():
                continue
            tracked[name] = _sha256(self.root / name)
        return RunSnapshot(self._results_bytes(), tracked, results)

    def tampering(self, before: RunSnapshot) -> str:
        """What the run changed that it must not have ("" for nothing); results.tsv is restored."""
        problems = []
        if self.cfg.harness_files and not self.ws.harness_ok():
            problems.append(f"{', '.join(self.cfg.harness_files)} changed during the run (harness fingerprint)")
        if before.watch_results and self._results_bytes() != before.results:
            if before.results is None:
                self.ws.results_path.unlink(missing_ok=True)
            else:
                atomic_write(self.ws.results_path, before.results.decode())
            problems.append("the run wrote to results.tsv (restored)")
        changed = [name for name, digest in before.tracked.items()
                   if _sha256(self.root / name) != digest and name not in self.cfg.harness_files]
        if changed:
            problems.append(f"the run changed files outside the editable set: {', '.join(sorted(changed)[:5])}")
        return "; ".join(problems)

    def _results_bytes(self) -> bytes | None:
        try:
            return self.ws.results_path.read_bytes()
        except OSError:
            return None


def _sha256(path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"
