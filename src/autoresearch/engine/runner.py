"""One supervised run of the workspace's command on the checked-out code, and its measurement.

`Runner.run(commit, pen, ...)` starts the command as a process group of its own
(autoresearch.proc.supervise) with run.log as its output, secrets scrubbed from its
environment, AUTORESEARCH_RESULT pointing at a fresh record path and a hard wall-clock
limit; it keeps the journal and current.json up to date for recovery and watchers, shows a
live line on a terminal, checks that the run left the protected files alone, and measures.
It makes no git changes and writes no rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, TextIO

from autoresearch import gitrepo, pins, preparing, proc, runlog, sandbox
from autoresearch.engine.command import command_argv
from autoresearch.engine.compilecache import CompileCache
from autoresearch.engine.guard import Guard
from autoresearch.engine.jailed import Jailed
from autoresearch.engine.liveline import LIVE_READ_BYTES, LiveLine
from autoresearch.engine.lifecycle import Pen
from autoresearch.engine.diskguard import DiskGuard
from autoresearch.engine.earlystop import EARLY, Reference
from autoresearch.engine.slots import Slot
from autoresearch.errors import AutoresearchError, MachineError
from autoresearch.engine.measure import LOG_READ_BYTES, Limits, Measurement, measure, read_log
from autoresearch.files import open_unlinked, read_tail, remove_tree
from autoresearch.research.results import printable
from autoresearch.state import Current
from autoresearch.workspace import Workspace

RESULT_VARIABLE = "AUTORESEARCH_RESULT"
DEADLINE_VARIABLE = "AUTORESEARCH_DEADLINE"  # Unix time at which the trainer is killed
SCRATCH_PREFIX = "autoresearch-run-"  # a run's folder in the temporary directory


def marker(result_path: str) -> str:
    """The environment entry that marks a run's processes as ours (see proc.group_has_marker)."""
    return f"{RESULT_VARIABLE}={result_path}"


def _missing_program(program: str, cwd: Path) -> str:
    """Why the command cannot start ("" when its program is there): said before any sandbox
    is started, so the reason names the program and not the sandbox's own tools."""
    if "/" in program:
        found = (cwd / program).exists()
    else:
        found = shutil.which(program) is not None
    return "" if found else f"cannot start {program}: No such file or directory"


class Runs(Protocol):
    """What runs a commit for an engine: this module's Runner, a Ray actor's stand-in
    (engine/cluster.py), a test's. `run` reports through the journal (`pen.update`: the
    harness record's path and the process group, for recovery) and returns the measurement;
    `log_path` is the engine's own copy of the run's output once it returned (outside the
    workspace, where the agent writes: a shown copy there is only shown). With `behind` (the frontier's
    training curve) a run whose own curve falls far behind it may be stopped early (a runner
    that cannot watch its run's log as it goes ignores it)."""

    limits: Limits
    log_path: Path

    def run(self, commit: str, pen: "Pen", *, kind: str, description: str,
            behind: "Reference | None" = None) -> Measurement: ...


class Runner:
    """Runs one experiment's code: the trainer in the sandbox on a staged copy of the commit,
    then (with a harness) the evaluator on the model it handed over; measures both."""

    def __init__(self, ws: Workspace, limits: Limits, guard: Guard, *, stream: TextIO, live: bool,
                 jail: sandbox.Sandbox | None = None, out: Callable[[str], None] | None = None,
                 slot: Slot = Slot(), halt: Callable[[], bool] | None = None):
        self.ws, self.limits, self.guard = ws, limits, guard
        self.state = ws.state.seat(slot.name) if slot.name else ws.state
        self.stream, self.live = stream, live
        self.out = out or (lambda line: print(line, file=stream, flush=True))
        self.sandbox = jail if jail is not None else sandbox.detect()
        # a worker of a pool (`run --workers N`): its own run.log, its share of the machine; the
        # pool's driver cleans the workspace and owns results.tsv, and `halt` stops its runs
        self.slot, self.halt = slot, halt
        # the run's output as the engine reads it, in its own folder; and a copy in the workspace
        # (run.log, a worker's log) for people and the agent, who may write there while it runs
        self.shown_path = ws.worker_log(slot.name) if slot.name else ws.log_path
        self.log_path = own_log(ws, slot.name)

    def _stop_when(self, disk: DiskGuard, behind: Reference | None = None) -> Callable[[], str]:
        def check() -> str:
            if self.halt is not None and self.halt():
                return "interrupted"
            if behind is not None:  # the trainer's own curve: it can only stop its run (engine/earlystop.py)
                tail = read_tail(self.log_path, LIVE_READ_BYTES)
                hopeless = behind.verdict(tail[:tail.rfind("\n") + 1]) if tail else ""
                if hopeless:
                    return hopeless
            return disk()
        return check

    def _halted(self) -> None:
        if self.halt is not None and self.halt():
            raise KeyboardInterrupt  # the pool is stopping: this run is interrupted, not a crash

    def run(self, commit: str, pen: Pen, *, kind: str, description: str,
            behind: Reference | None = None) -> Measurement:
        """Run the command on `commit` (a staged copy of it) and measure it; with `behind`, stop
        it early when its training curve falls far behind that one."""
        began = time.monotonic()
        if not self.sandbox.on and (self.ws.config.require_sandbox or os.environ.get(REQUIRE) == "1"):
            raise AutoresearchError(f"no sandbox for the training run ({self.sandbox.why}), and the "
                                    f"sandbox is required (require_sandbox / --require-sandbox)")
        self._clean()
        result_path = self._result_path()
        pinned = self.ws.pins  # read once: the pins file lives outside the workspace
        # a pool's sandboxed run cannot see the workspace, where the agent edits meanwhile: only a
        # run that could reach it (one at a time, or unsandboxed) is checked against it
        watch = not self.slot.name or not self.sandbox.on
        before = self.guard.snapshot(results=not self.slot.name) if watch else None
        pen.update(result_path=str(result_path))
        # for watchers; kept here and written out, never read back (the agent can write that folder)
        self.current = Current(commit=commit[:7], description=description, kind=kind, started_at=time.time(),
                               budget=self.ws.config.budget, agent=pen.journal.agent)
        self.state.write_current(self.current)

        def on_start(pgid: int) -> None:
            pen.update(pgid=pgid)
            self.show(pid=pgid)

        # a run's scratch holds its hand-over (hundreds of MB at the GPU shapes): one left by an
        # engine that was killed is removed by the next run on the host
        proc.sweep_folders(SCRATCH_PREFIX)
        scratch = proc.own_folder(SCRATCH_PREFIX)
        caches = CompileCache.of(self.ws.root) if self.ws.config.compile_cache else None
        try:
            with sandbox.leased(self.sandbox) as box:  # a root engine's run: a uid of its own
                stage = Stage.make(self.ws, commit, scratch, box, pinned, self.slot)
                if caches is not None and caches.seed(commit, kind, scratch / "cache", box.owner()):
                    self.out(f"compile cache: warm, from the first measured run of {commit[:7]}")
                outcome, log, evaluation = self._run_stage(stage, argv=command_argv(self.ws.config.command),
                                                           result_path=result_path, kind=kind, commit=commit,
                                                           on_start=on_start, behind=behind)
            tampered = self.guard.tampering(before) if before is not None else ""
            m = measure(self.ws.config, self.limits, outcome, log, result_path, pinned.val_sha256, evaluation,
                        harness_pin=pinned.harness_sha256)
            if tampered:
                m = replace(m, value=None, reason=tampered)
            elif outcome.error.startswith(EARLY):
                m = replace(m, hopeless=True, **self._trained_so_far())
            if caches is not None and m.ok:
                caches.keep(commit, kind, scratch / "cache")  # the commit's first measured run only
        finally:
            remove_tree(scratch)  # whatever the run made of it
        if not self.sandbox.on:
            m = replace(m, unsandboxed=True)
        with contextlib.suppress(OSError):
            result_path.unlink()
        own = time.monotonic() - began - outcome.seconds - (evaluation.seconds if evaluation is not None else 0.0)
        return replace(m, engine_seconds=round(max(own, 0.0), 1))

    def _trained_so_far(self) -> dict:
        """A run stopped early: its steps and training seconds from its last progress line (the
        pace a stale frontier is told by keeps counting it)."""
        tail = read_tail(self.log_path, LIVE_READ_BYTES) or ""
        found = runlog.progress(tail)
        share = found.fields.get("progress") if found is not None else None
        if found is None or not isinstance(share, float):
            return {}
        return {"steps": found.step, "training_seconds": round(share / 100 * self.ws.config.budget, 1)}

    def _clean(self) -> None:
        """One at a time: nothing untracked or ignored in the workspace outlives the change that made it."""
        removed = [] if self.slot.name else self.guard.clean()
        if removed:
            shown = ", ".join(printable(p) for p in removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
            self.out(f"removed {len(removed)} untracked or ignored {'path' if len(removed) == 1 else 'paths'} "
                     f"before the run: {shown}")

    def _result_path(self) -> Path:
        """A fresh name for the run's harness record, earlier runs' records gone."""
        runs = self.state.runs_dir
        runs.mkdir(parents=True, exist_ok=True)
        for old in runs.glob("*.json*"):
            with contextlib.suppress(OSError):
                old.unlink()
        return runs / f"{int(time.time())}-{uuid.uuid4().hex[:12]}.json"

    def show(self, **changes) -> None:
        """The run in flight, changed, for watchers (current.json)."""
        self.current = replace(self.current, **changes)
        self.state.write_current(self.current)

    def _run_stage(self, stage: "Stage", *, argv: list[str], result_path: Path, kind: str, commit: str,
                   on_start, behind: Reference | None = None) -> tuple[proc.RunOutcome, str, proc.RunOutcome | None]:
        """The trainer on the staged copy, then the evaluator on what it handed over."""
        stage.check_data()
        live = LiveLine(self.stream, self.log_path, f"{kind} {commit[:7]}") if self.live else None
        disk = DiskGuard(stage.scratch)
        # the evaluator gets ready (its imports, the harness) while the trainer trains; it reads
        # nothing of the run's before the engine says go, once the trainer's group is dead
        evaluator = self._start_evaluator(stage, result_path) if self.ws.config.harness_record else None
        try:
            missing = _missing_program(argv[0], stage.cwd)
            if missing:
                self._log(missing.encode() + b"\n", append=False)
                outcome = proc.RunOutcome(None, 0.0, error=missing)
            else:
                jail = stage.trainer_jail()
                # the one deadline of the whole process, from its start (docs/trust.md)
                env = {**jail.env, RESULT_VARIABLE: str(result_path),
                       DEADLINE_VARIABLE: f"{time.time() + self.limits.hard:.3f}"}
                outcome = disk.after(Jailed.start(stage.box, argv, jail, env, stage.cwd, self.log_path, "the sandbox",
                                                  shown=self.shown_path).finish(
                    self.limits.hard, on_start=on_start, on_tick=live, stop_when=self._stop_when(disk, behind)))
            self._halted()
            # only the evaluator writes the record: anything the trainer left there goes
            # (without a sandbox it can reach this path)
            with contextlib.suppress(OSError):
                result_path.unlink()
            log = read_log(self.log_path)
            evaluation = None
            if evaluator is not None and outcome.returncode == 0 and not outcome.timed_out:
                if live is not None:
                    live.evaluate(after=outcome.seconds)
                self.show(phase="evaluating")  # watchers say so from here on
                evaluation = self._evaluate(evaluator, stage, result_path, on_start, disk, live)
                self._halted()
        finally:
            if evaluator is not None:
                evaluator.cancel()  # one that never got its go (the trainer failed, a stop) ends here
            if live is not None:
                live.clear()
            self.state.clear_current()
        return outcome, log, evaluation

    def _log(self, data: bytes, *, append: bool) -> None:
        write_log(self.log_path, self.shown_path, data, append=append)

    def _start_evaluator(self, stage: "Stage", result_path: Path) -> "Jailed":
        """The evaluator process, started to wait for the hand-over (autoresearch.evaluator --wait)."""
        job = stage.evaluator_job(result_path)
        sandbox.prepare_folder(stage.scratch / "record", stage.box.owner())
        jail = stage.evaluator_jail(result_path)
        return Jailed.start(stage.box, [sys.executable, "-I", "-B", "-m", "autoresearch.evaluator", "--wait", str(job)],
                            jail, {**jail.env, RESULT_VARIABLE: str(result_path)}, stage.scratch,
                            stage.scratch / "evaluator.log", "the evaluator's sandbox", stdin=True)

    def _evaluate(self, evaluator: "Jailed", stage: "Stage", result_path: Path, on_start, disk: DiskGuard,
                  live: "LiveLine | None" = None) -> proc.RunOutcome:
        """The waiting evaluator told to go on the hand-over: its output follows the trainer's in run.log."""
        evaluator.go()
        outcome = disk.after(evaluator.finish(self.limits.evaluator, on_start=on_start, on_tick=live,
                                              stop_when=self._stop_when(disk)))
        with contextlib.suppress(OSError):
            self._log(b"\n[the engine's evaluator]\n"
                      + without_device_asserts(evaluator.log_path.read_bytes())[-LOG_READ_BYTES:], append=True)
        written = stage.scratch / "record" / result_path.name
        if not outcome.error and written.is_file() and not written.is_symlink():
            shutil.copyfile(written, result_path)
        return outcome


def write_log(own: Path, shown: Path, data: bytes, *, append: bool = False) -> None:
    """Write into a run's log, the engine's copy and the one shown (a failure of the shown copy aside)."""
    with open_unlinked(own, append=append) as fh:
        fh.write(data)
    with contextlib.suppress(OSError), open_unlinked(shown, append=append) as fh:
        fh.write(data)


def own_log(ws: Workspace, worker: str = "") -> Path:
    """Where the engine keeps the output of a worker's run while it reads it: its own folder."""
    folder = ws.state.private / "live"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{worker or 'run'}.log"


REQUIRE = "AUTORESEARCH_REQUIRE_SANDBOX"  # set by `autoresearch run --require-sandbox`
INSIDE = Path("/workspace")  # where the staged code is, inside the sandbox
HANDOVER = Path("/scratch/handover")
DATA = Path("/data")  # AUTORESEARCH_CACHE_DIR inside the sandbox
TRAIN_FILES = ("train.bin", "train.idx.npy", "manifest.json", "tokenizer")
VAL_FILES = ("val.bin", "val.idx.npy", "manifest.json", "tokenizer")
# the only variables of the engine's environment that a run gets (and never a secret,
# proc.scrubbed): locale and time zone, the GPU's and the thread libraries' settings. Anything
# else (a DATABASE_URL, git's or Python's settings, paths of the engine's own) stays out.
_PASSED = re.compile(r"^(LANG|LANGUAGE|LC_[A-Z]+|TZ|TERM|LD_LIBRARY_PATH|CUDA_[A-Z0-9_]+|NVIDIA_[A-Z0-9_]+|"
                     r"(OMP|MKL|OPENBLAS|NUMEXPR|VECLIB_MAXIMUM)_NUM_THREADS|KMP_[A-Z_]+|"
                     r"PYTORCH_[A-Z0-9_]+|TORCH_[A-Z0-9_]+|TORCHINDUCTOR_[A-Z0-9_]+|TRITON_[A-Z0-9_]+)$")


# CUDA prints a failed device-side assertion (an index out of range) with the block and thread
# where it failed: a program could fail on purpose at positions chosen by the validation tokens
# it is given, and the evaluator's output goes to run.log, which the agent reads
_DEVICE_ASSERT = re.compile(rb"(block|thread): \[")
WITHHELD = b"[device-side assertions failed: where, and how many, is not shown: it could tell the validation tokens]"


def without_device_asserts(output: bytes) -> bytes:
    """The evaluator's output without the lines that say where a device-side assertion failed,
    and one line in their place (their number could tell the tokens too)."""
    lines = output.split(b"\n")
    kept = [line for line in lines if not _DEVICE_ASSERT.search(line)]
    return output if len(kept) == len(lines) else b"\n".join([WITHHELD, *kept])


@dataclass(frozen=True)
class Stage:
    """One run's scratch folder: the commit's tracked files (never the workspace itself), a
    home, the hand-over folder and a compile cache, each writable by the run; and where the
    prepared data is on this machine."""

    ws: Workspace
    box: sandbox.Sandbox
    pinned: pins.Pins  # as the run read them, once
    scratch: Path
    work: Path
    prepared: Path | None  # the harness's PREPARED_DIR on this machine (None: no harness)
    harness: Path | None  # the pinned harness copied out of the workspace, for the evaluator
    slot: Slot = Slot()  # the worker's share of the machine (its GPU, its threads)

    @classmethod
    def make(cls, ws: Workspace, commit: str, scratch: Path, box: sandbox.Sandbox,
             pinned: pins.Pins | None = None, slot: Slot = Slot()) -> "Stage":
        pinned = pinned or ws.pins
        owner = box.owner()
        os.chmod(scratch, 0o755)
        work = scratch / "work"
        work.mkdir()
        gitrepo.export_tree(ws.root, commit, work, exclude=[ws.config.notes] if ws.config.notes else [])
        for folder in ("home", "handover", "cache", "work"):
            sandbox.prepare_folder(scratch / folder, owner)
        if owner is not None:
            for path in work.rglob("*"):
                os.chown(path, owner, owner, follow_symlinks=False)
        prepared = harness = None
        if ws.config.harness_record and ws.config.harness_files:
            evaluator = sandbox.prepare_folder(scratch / "evaluator", None)
            # from the commit's own copy, made just now: the agent may be editing the workspace's
            harness = preparing.harness_copy(ws, evaluator, pinned.harness_sha256, source_root=work)
            prepared = preparing.prepared_dir(ws)
        return cls(ws, box, pinned, scratch, work, prepared, harness, slot)

    @property
    def cwd(self) -> Path:
        return self.work

    def check_data(self) -> None:
        """The prepared data must be there: without it the run would fail for this machine's
        reasons, not the code's."""
        if self.prepared is None:
            return
        missing = [n for n in dict.fromkeys((*TRAIN_FILES, *VAL_FILES)) if not (self.prepared / n).exists()]
        if missing:
            raise MachineError(f"the prepared data is missing ({', '.join(missing)} in {self.prepared}): "
                               f"`autoresearch prepare` makes it")

    def _at(self, inside: Path, outside: Path) -> Path:
        """Where a bound folder is, as the run sees it: its target in a sandbox that moves
        binds (bubblewrap), else where it is on this machine (Seatbelt, no sandbox)."""
        return inside if self.box.remaps else outside

    def inside_env(self, cache: Path | None = None, home: Path | None = None) -> dict[str, str]:
        """The run's whole environment: the engine's variables that training needs (`_PASSED`:
        locale, GPU and thread settings), never any other, and the paths it is given."""
        env = {k: v for k, v in proc.scrubbed(os.environ).items() if _PASSED.match(k)}
        on = self.box.remaps
        home = self._at(Path("/scratch/home"), home or self.scratch / "home")
        cache = self._at(Path("/scratch/cache"), cache or self.scratch / "cache")
        tmp = "/tmp" if on or not self.box.on else str(self.scratch / "tmp")  # Seatbelt: /tmp is not writable
        env.update(
            HOME=str(home), TMPDIR=tmp, USER=sandbox.user_name(), LOGNAME=sandbox.user_name(),
            PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1",
            AUTORESEARCH_HANDOVER=str(self._at(HANDOVER, self.scratch / "handover")),
            TORCHINDUCTOR_CACHE_DIR=str(cache / "inductor"), TRITON_CACHE_DIR=str(cache / "triton"),
        )
        env["PATH"] = os.pathsep.join(dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]))
        env.update(self.slot.env)
        if self.prepared is not None:
            # the data where this run finds it: bound at /data in the jail, else the engine's own
            # cache (the run's HOME is a fresh one, so the harness's default would miss it)
            env["AUTORESEARCH_CACHE_DIR"] = str(DATA) if on else str(self.prepared.parent.parent)
        return env

    def _data_binds(self, names: tuple[str, ...]) -> tuple[sandbox.Bind, ...]:
        if self.prepared is None:
            return ()
        inside = DATA / self.prepared.relative_to(self.prepared.parent.parent)  # CACHE_DIR/prepared/KEY
        return tuple(sandbox.Bind(self.prepared / n, inside / n) for n in names if (self.prepared / n).exists())

    def _hidden(self) -> tuple[Path, ...]:
        hidden = [self.ws.root, pins.home()]
        if self.prepared is not None:
            hidden.append(self.prepared)
        return tuple(hidden)

    def val_sources(self) -> tuple[Path, ...]:
        """Folders the trainer must not see even where they lie inside what it is shown (the Python
        installation, /usr): where the validation documents came from, as the manifest
        records them (pysource: test folders of the Python installation; files: the folder),
        and the whole data cache."""
        if self.prepared is None:
            return ()
        try:
            listed = json.loads((self.prepared / "manifest.json").read_text()).get("val_sources") or []
        except (OSError, ValueError, AttributeError):
            listed = []
        # pysource: every test folder of every Python installation in view, not only those the
        # split came from: the same package's tests may sit in a base interpreter's site-packages
        every_test = sandbox.test_folders(sandbox.python_roots(self._hidden())) if self.ws.config.dataset == "pysource" else ()
        return (self.prepared.parent.parent, *(Path(p) for p in listed if isinstance(p, str) and os.path.isabs(p)),
                *every_test)

    def trainer_jail(self) -> sandbox.Jail:
        """The trainer sees its staged code, the training split and the tokenizer; not the
        validation split or where its documents came from, the workspace, .git, the engine's
        state or the pins."""
        binds = (
            sandbox.Bind(self.work, INSIDE, writable=True),
            sandbox.Bind(self.scratch / "home", Path("/scratch/home"), writable=True),
            sandbox.Bind(self.scratch / "handover", HANDOVER, writable=True),
            sandbox.Bind(self.scratch / "cache", Path("/scratch/cache"), writable=True),
            *self._data_binds(TRAIN_FILES),
        )
        return sandbox.Jail(binds + self._tmp_bind(), self._at(INSIDE, self.work), self.inside_env(), gpus=True,
                            card=self.slot.device, hidden=self._hidden(), masked=self.val_sources(), outside_only=(RESULT_VARIABLE,))

    def _tmp_bind(self) -> tuple[sandbox.Bind, ...]:
        """A writable temporary folder where the sandbox does not make one (Seatbelt)."""
        if self.box.remaps or not self.box.on:
            return ()
        return (sandbox.Bind(sandbox.prepare_folder(self.scratch / "tmp", self.box.owner()), self.scratch / "tmp",
                             writable=True),)

    def evaluator_job(self, result_path: Path) -> Path:
        job = {
            "harness": str(self._at(Path("/evaluator/prepare.py"), self.harness)),
            "harness_sha256": self.pinned.harness_sha256,
            "handover": str(self._at(HANDOVER, self.scratch / "handover")),
            "record": str(self._at(Path("/record"), self.scratch / "record") / result_path.name),
            "metric": self.ws.config.metric,
        }
        path = self.scratch / "evaluator" / "job.json"
        path.write_text(json.dumps(job))
        return self._at(Path("/evaluator/job.json"), path)

    def evaluator_jail(self, result_path: Path) -> sandbox.Jail:
        """The evaluator sees the pinned harness, the validation split and the hand-over (read
        only) and writes one record; it runs as the engine's own code, apart from the trainer."""
        # a home and a compile cache of its own: nothing the trainer wrote (a kernel planted in
        # ~/.cache/torch/kernels, an Inductor or Triton artifact) is ever loaded here
        cache = sandbox.prepare_folder(self.scratch / "evaluator-cache", self.box.owner())
        home = sandbox.prepare_folder(self.scratch / "evaluator-home", self.box.owner())
        binds = (
            sandbox.Bind(self.scratch / "evaluator", Path("/evaluator")),
            sandbox.Bind(self.scratch / "handover", HANDOVER),
            sandbox.Bind(self.scratch / "record", Path("/record"), writable=True),
            sandbox.Bind(home, Path("/scratch/home"), writable=True),
            sandbox.Bind(cache, Path("/scratch/cache"), writable=True),
            *self._data_binds(VAL_FILES),
            *self._tmp_bind(),
        )
        env = dict(self.inside_env(cache=cache, home=home))
        env.pop("AUTORESEARCH_HANDOVER", None)
        # no kernel caches at all: the evaluator compiles what it runs, every time
        env.update(USE_PYTORCH_KERNEL_CACHE="0", CUDA_CACHE_DISABLE="1")
        return sandbox.Jail(binds, self._at(Path("/evaluator"), self.scratch / "evaluator"), env, gpus=True,
                            card=self.slot.device, hidden=(self.ws.root, pins.home()), outside_only=(RESULT_VARIABLE,))
