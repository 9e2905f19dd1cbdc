"""The guard: what a change may touch, and whether its code already ran.

Before a run: the change against the frontier may touch only the editable files (and the
agent's notes, which survive every reset and are never scored); autoresearch.toml and the
harness are never editable, whatever the settings say; the harness must match its
fingerprint; an editable file may not carry data (`payload_problem`: a size cap per file and
for all of them, text only, and in Python no literal large enough to hold weights); code whose
editable files are identical to code that already ran is not run again (`seen.json`, keyed by
the content of the editable files). During a run: results.tsv and every tracked file outside
the editable set must come out as they went in (`RunSnapshot`).

The settings come from the pinned copy (autoresearch.pins), never from the tree. The tree's
autoresearch.toml may differ from the frontier's only where it is the pinned text, which
`autoresearch settings --accept` put there: it then rides along (kept across resets, committed
with the next candidate) until a kept change brings it into the branch.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import re
import tokenize
from dataclasses import dataclass

from autoresearch import gitrepo
from autoresearch.config import CONFIG_NAME
from autoresearch.engine.command import runs_our_python
from autoresearch.files import atomic_write, behind_a_link
from autoresearch.research import keeprule
from autoresearch.research.history import History
from autoresearch.research.results import Row
from autoresearch.state import STATE_DIR
from autoresearch.store import SeenEntry
from autoresearch.workspace import Workspace

# -- what an editable file may carry ---------------------------------------------------------
#
# The editable files are code. Weights trained elsewhere and pasted in (a 2.9 MB train.py was
# one agent's way to a better score) must not get through. The limits must let through, with
# room, the two train.py files they were measured on (with the counting below): the template's
# (src/autoresearch/templates/llm/train.py) and the original autoresearch project's:
#
#                                          template    original    limit
#   file size                              25,550 B    26,230 B    64 KiB per file, 256 KiB together
#   largest str/bytes constant                538 B       126 B    4 KiB (an int: its bytes)
#   str/bytes constants, total              2,915 B     1,380 B    16 KiB
#   constants in one list/tuple/set/dict         3           6     256
#   str and number constants                   328         347     2,000
#   comments, total                         3,651 B     2,532 B    16 KiB
#
# Each limit is 2.5x (the file size) to 40x above both. What still fits is small: 2,000 numbers
# (16 KB as float64) or 16 KiB of strings per file, against the megabytes of a useful model.
# The file cap leaves a train.py room to grow to more than twice its size; the total lets an
# editable set of a few such files through and stops data split across many files. Data hidden
# in whitespace or in names is bounded by the size caps only.
MAX_FILE_BYTES = 64 * 1024
MAX_TOTAL_BYTES = 256 * 1024
MAX_CONSTANT_BYTES = 4 * 1024
MAX_TEXT_BYTES = 16 * 1024
MAX_ELEMENTS = 256
MAX_CONSTANTS = 2000
MAX_COMMENT_BYTES = 16 * 1024


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def payload_problem(name: str, data: bytes, *, ours: bool = True) -> str:
    """Why the editable file `name` with content `data` may not run ("" when it may): over the
    size cap, not UTF-8 text, or (a .py file) declared in another encoding, not parsed, or
    holding a literal that could hold weights. `ours`: the run's interpreter is this one (see
    literal_problem)."""
    if len(data) > MAX_FILE_BYTES:
        return (f"{name} is {_kib(len(data))}: an editable file may hold at most {_kib(MAX_FILE_BYTES)} "
                f"(code, not data or weights)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return f"{name} is not UTF-8 text: editable files hold code, not binary data"
    if not name.endswith(".py"):
        return ""
    # Python ends a line at a lone carriage return, a diff (and tokenize's encoding detection)
    # does not: `\r# coding: utf-7` would pass the check below as a first line that is blank
    if re.search(rb"\r(?!\n)", data):
        return (f"{name} has a carriage return that does not end a Windows line: Python reads it as "
                f"a line break where a diff shows none, so an editable Python file may not hold one")
    # Python reads a file in the encoding its first lines declare: a `coding: utf-7` line makes
    # plain ASCII text run as other code than the diff shows (and than a UTF-8 reading parses)
    try:
        encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0]
        same = data.decode(encoding) == data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8")
    except (SyntaxError, LookupError, UnicodeError):  # an encoding Python does not know or cannot apply
        encoding, same = "unknown", False
    if not same:  # `utf8`, `ascii` on an ASCII file: the same text; `utf-7`: other code
        return (f"{name} declares its source encoding as {encoding}, in which it reads otherwise than as "
                f"UTF-8: an editable Python file is read as UTF-8, so that what runs is what its diff shows")
    return literal_problem(name, data, ours=ours)


def _number(node: ast.AST) -> bool:
    """A number constant, signed or not (-0.5 is a minus applied to 0.5)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)) \
        and not isinstance(node.value, bool)


def _constant_bytes(value) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (abs(value).bit_length() + 7) // 8
    return 0


def literal_problem(name: str, source: str | bytes, *, ours: bool = True) -> str:
    """Why the Python source of `name` holds too much data in its literals ("" when it does not);
    see the limits above. It is parsed from bytes, the way Python reads a file (a byte-order mark,
    a coding declaration), not as a str: a BOM that str parsing refuses would otherwise skip
    the check of a file Python runs. Source that does not parse is refused, never left to the
    run: Python runs a file with null bytes in it as a zip archive (its `__main__.py`, which no
    check would read), and the depth at which a parse gives up depends on the caller's stack,
    so a file nested just too deep for the guard still runs as a program. A syntax error is
    refused when the run's interpreter is this one (`ours`, the default command); another
    interpreter (a newer Python) may run syntax this one cannot parse, so it is left to the run
    there, with the size caps alone."""
    data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    if b"\0" in data or b"PK\x05\x06" in data:
        return f"{name} holds null bytes or a zip archive's directory: an editable Python file is source text"
    try:
        tree = ast.parse(data)
    except SyntaxError as e:
        if not ours:
            return ""
        return (f"{name} line {e.lineno}: {type(e).__name__}: {e.msg} (an editable Python file must parse, "
                f"so that what runs is what was checked)")
    except (ValueError, RecursionError, MemoryError) as e:
        return (f"{name} cannot be parsed to be checked ({type(e).__name__}: nested too deeply?): an "
                f"editable Python file must parse")
    count = text_bytes = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            size = _constant_bytes(node.value)
            if size > MAX_CONSTANT_BYTES:
                kind = "string" if isinstance(node.value, (str, bytes)) else "number"
                return (f"{name} line {node.lineno}: a {kind} constant of {_kib(size)} "
                        f"(at most {_kib(MAX_CONSTANT_BYTES)}: no weights or data in the code)")
            if isinstance(node.value, (str, bytes)):
                text_bytes += size
                count += 1
            elif _number(node):
                count += 1
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            items = [*node.keys, *node.values] if isinstance(node, ast.Dict) else node.elts
            n = sum(1 for e in items if e is not None and (_number(e) or isinstance(e, ast.Constant)))
            if n > MAX_ELEMENTS:
                return (f"{name} line {node.lineno}: a literal of {n} constants "
                        f"(at most {MAX_ELEMENTS} in one literal: no weights or data in the code)")
    if text_bytes > MAX_TEXT_BYTES:
        return (f"{name}: {_kib(text_bytes)} of string constants "
                f"(at most {_kib(MAX_TEXT_BYTES)} in one file: no weights or data in the code)")
    if count > MAX_CONSTANTS:
        return f"{name}: {count} string and number constants (at most {MAX_CONSTANTS}: no weights or data in the code)"
    comments = _comment_bytes(data)
    if comments > MAX_COMMENT_BYTES:
        return f"{name}: {_kib(comments)} of comments (at most {_kib(MAX_COMMENT_BYTES)}: no data in the code)"
    return ""


def _comment_bytes(data: bytes) -> int:
    total = 0
    try:
        for tok in tokenize.tokenize(io.BytesIO(data).readline):
            if tok.type == tokenize.COMMENT:
                total += len(tok.string.encode("utf-8", "surrogatepass"))
    except (tokenize.TokenError, SyntaxError):
        pass
    return total


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
        return ["results.tsv", "run.log", "progress.png", "report.md", "finalize.md", STATE_DIR + "/", *self.protected()]

    def clean(self) -> list[str]:
        """Remove every untracked and ignored file but the engine's own: nothing planted in the
        workspace (a .pyc, a package hidden by .git/info/exclude) outlives the change that made it."""
        return gitrepo.clean_untracked(self.root, keep=self.engine_files())

    def protected(self) -> list[str]:
        """Files that survive every reset: the agent's notes."""
        return [self.cfg.notes] if self.cfg.notes else []

    def is_editable(self, path: str) -> bool:
        if path == CONFIG_NAME or path in self.cfg.harness_files:
            return False  # whatever the settings say
        for name in self.cfg.editable:
            name = name.rstrip("/")
            if path == name or path.startswith(name + "/"):
                return True
        return False

    def settings_accepted(self) -> bool:
        """Whether the tree's autoresearch.toml is the pinned text (the settings a person accepted,
        on their way into the branch), so that its difference from a commit is no change of the agent's."""
        path = self.root / CONFIG_NAME
        try:
            return not path.is_symlink() and path.read_bytes() == self.ws.settings_text.encode()
        except OSError:
            return False

    def _ours(self) -> list[str]:
        """Paths whose difference from a commit is not the agent's change: the notes, and
        autoresearch.toml while it holds the accepted settings."""
        return [*self.protected(), *([CONFIG_NAME] if self.settings_accepted() else [])]

    def dirty(self) -> list[str]:
        """Uncommitted changes, the notes file and accepted settings aside."""
        ours = self._ours()
        return [p for p in gitrepo.changes(self.root) if p not in ours]

    def changed(self, frontier: str) -> list[str]:
        """Paths the working tree changed against the frontier, the notes and accepted settings aside."""
        ours = self._ours()
        return [p for p in gitrepo.changed_since(self.root, frontier) if p not in ours]

    def violation(self, changed: list[str]) -> str:
        """Why a change may not run ("" when it may): a link, a change of the settings, files
        outside the editable set, an editable file that carries data, or a harness that does
        not match its fingerprint."""
        links = [p for p in (*changed, *self.protected()) if (self.root / p).is_symlink()]
        if links:
            return f"{links[0]} is a link: editable files and the notes must be regular files"
        if CONFIG_NAME in changed:
            return (f"{CONFIG_NAME} changed: the workspace's settings are not editable "
                    f"(a person changes them with `autoresearch settings --accept`)")
        outside = [p for p in changed if not self.is_editable(p)]
        if outside:
            more = " …" if len(outside) > 5 else ""
            return f"changed files outside the editable set: {', '.join(outside[:5])}{more}"
        carried = self.payload(changed)
        if carried:
            return carried
        if self.cfg.harness_files and not self.ws.harness_ok():
            return f"{', '.join(self.cfg.harness_files)} does not match the workspace fingerprint"
        return ""

    def payload(self, changed: list[str]) -> str:
        """Why the editable files would carry data ("" when they do not): each changed one is
        checked (`payload_problem`), and all of them together against MAX_TOTAL_BYTES. The notes
        are exempt: they are never staged for a run."""
        total = 0
        notes = self.protected()
        for path in sorted({*changed, *gitrepo.tracked(self.root)}):
            file = self.root / path
            if path in notes or not self.is_editable(path) or file.is_symlink() or not file.is_file():
                continue
            if path in changed:
                reason = self.payload_of(path, file.read_bytes())
                if reason:
                    return reason
            total += file.stat().st_size
        if total > MAX_TOTAL_BYTES:
            return (f"the editable files hold {_kib(total)} together: at most {_kib(MAX_TOTAL_BYTES)} "
                    f"(code, not data or weights)")
        return ""

    def committed_total(self, commit: str) -> str:
        """Why the editable files of `commit` hold too much together ("" when they do not): a
        merge of two wins, each under MAX_TOTAL_BYTES, can add up past it."""
        notes = set(self.protected())
        total = 0
        for item in gitrepo.git(self.root, "ls-tree", "-r", "-l", "-z", commit).stdout.split("\0"):
            meta, _, path = item.partition("\t")
            fields = meta.split()
            if len(fields) == 4 and fields[1] == "blob" and path not in notes and self.is_editable(path):
                total += int(fields[3])
        if total > MAX_TOTAL_BYTES:
            return f"the editable files would hold {_kib(total)} together: at most {_kib(MAX_TOTAL_BYTES)}"
        return ""

    def payload_of(self, path: str, data: bytes) -> str:
        """payload_problem of one editable file, for this workspace's run command."""
        return payload_problem(path, data, ours=runs_our_python(self.cfg.command))

    def reset(self, commit: str) -> None:
        """The tree at `commit`; the notes stay, and so do accepted settings that the commit lacks."""
        gitrepo.reset_hard(self.root, commit, keep=self._ours())

    @contextlib.contextmanager
    def set_aside(self, changed: list[str], frontier: str):
        """Take the change out of the tree while the unchanged code runs; it comes back, whatever happens."""
        saved = {p: (self.root / p).read_bytes() if (self.root / p).is_file() else None for p in changed}
        self.reset(frontier)
        try:
            yield
        finally:
            for p, data in saved.items():
                path = self.root / p
                if behind_a_link(self.root, p):  # an ignored folder the reset left may be a link
                    continue
                if data is None:
                    path.unlink(missing_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(path, data)

    def back_to(self, branch: str) -> None:
        """HEAD on `branch` again, at its tip, whatever the tree held (the notes stay)."""
        gitrepo.git(self.root, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
        self.reset(gitrepo.head(self.root))

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
        """Code that already ran, by content key; rebuilt from the rows when the store has none
        (a workspace whose records were moved in without it)."""
        store = self.ws.store
        seen = store.seen()
        if seen or not any(r.ran for r in history.rows):
            return seen
        for r in history.rows:
            if not r.ran or r.commit[:7] in {v.commit for v in seen.values()}:
                continue
            sha = gitrepo.resolve(self.root, r.commit)
            if sha:
                seen.setdefault(self.content_key(sha), seen_entry(r))
        store.remember(seen)
        return seen

    def remember(self, key: str, row: Row) -> None:
        if row.ran:
            self.ws.store.remember({key: seen_entry(row)})

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
