"""The command line: thin wrappers that parse options and call one module each.

Every AutoresearchError becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
import math
import sys

import click

from autoresearch import __version__
from autoresearch.errors import AutoresearchError
from autoresearch.research.results import printable


def clean_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AutoresearchError as exc:
            click.echo(f"error: {printable(str(exc))}", err=True)  # an agent's words may be in it
            sys.exit(1)

    return wrapper


class Number(click.ParamType):
    """A finite number (nan and inf are refused), positive or at least zero."""

    name = "number"

    def __init__(self, *, zero_ok: bool = False, whole: bool = False):
        self.zero_ok, self.whole = zero_ok, whole
        self.name = "integer" if whole else "number"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(value) if self.whole else float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a {'whole ' if self.whole else ''}number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number < 0 or (number == 0 and not self.zero_ok):
            self.fail(f"{value!r}: give a number {'of 0 or more' if self.zero_ok else 'above 0'}", param, ctx)
        return number


SECONDS = Number()
COUNT = Number(zero_ok=True, whole=True)
AMOUNT = Number(zero_ok=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="autoresearch")
def main() -> None:
    """Autonomous ML research: an agent edits train.py, trains for a fixed time budget,
    and keeps the change only if val_bpb beat the best so far by more than the noise."""


@main.command(short_help='Make a research workspace (a git repository).')
@click.argument("directory", default=".", required=False, type=click.Path(file_okay=False))
@click.option("--profile", default="auto", show_default=True,
              type=click.Choice(["auto", "cuda-large", "cuda", "mps", "cpu"]),
              help="Model size and budget; auto picks from the hardware.")
@click.option("--dataset", default=None, help="climbmix, tinystories, pysource (offline) or files:PATH. Default: per profile.")
@click.option("--budget", type=SECONDS, default=None,
              help="Seconds of training per experiment. Default: the profile's (300 on a GPU, 20 on the CPU; "
                   "60 for --template blank).")
@click.option("--template", default="llm", show_default=True, type=click.Choice(["llm", "blank"]),
              help="llm: the GPT harness; blank: any command that prints `NAME: value` lines.")
@click.option("--command", "command", default=None, help="Run command (blank template).")
@click.option("--metric", default=None, help="Metric name to optimise (blank template).")
@click.option("--direction", default=None, type=click.Choice(["lower", "higher"]), help="Which way is better.")
@click.option("--editable", multiple=True, help="A file the agent may change (repeatable).")
@clean_errors
def init(directory, profile, dataset, budget, template, command, metric, direction, editable):
    """Create a research workspace (a git repository) in DIRECTORY (default: this folder).

    The folder must be new or empty. Nothing is downloaded yet: `autoresearch prepare` (or the
    first `autoresearch run`) fetches the data.
    """
    from autoresearch.workspace import init_workspace

    ws = init_workspace(directory, profile=profile, dataset=dataset, budget=budget, template=template,
                        command=command, metric=metric, direction=direction, editable=tuple(editable), out=click.echo)
    c = ws.config
    click.echo(f"workspace {ws.root}")
    click.echo(f"  template {c.template}, profile {c.profile}, dataset {c.dataset}, budget {c.budget:g} s")
    click.echo(f"  editable: {', '.join(c.editable)}; metric {c.metric} ({c.direction} is better)")
    if c.template == "llm":
        click.echo("next: cd into it, then `autoresearch prepare` and `autoresearch run`")


@main.command(short_help='Fetch or collect the data and train the tokenizer.')
@click.option("-C", "--workspace", "where", default=".", type=click.Path(file_okay=False), help="Workspace folder.")
@clean_errors
def prepare(where):
    """Download or collect the data and train the tokenizer (idempotent, resumable)."""
    from autoresearch.workspace import Workspace
    from autoresearch import preparing

    ws = Workspace.find(where)
    preparing.prepare(ws)


@main.command(short_help='Show the pinned settings, or accept an edited autoresearch.toml.')
@click.option("-C", "--workspace", "where", default=".", type=click.Path(file_okay=False), help="Workspace folder.")
@click.option("--accept", is_flag=True,
              help="Check the working tree's autoresearch.toml, commit it on the current branch and pin it.")
@clean_errors
def settings(where, accept):
    """The workspace's settings, as the engine reads them: the copy pinned outside the workspace
    (the agent can edit autoresearch.toml in the tree, the engine never reads it there).

    To change a setting: edit autoresearch.toml, then `autoresearch settings --accept`. It
    refuses a file that does not parse, that changes the harness or its fingerprint, or that
    makes the settings or the harness editable; and it refuses while an engine runs here.
    """
    from autoresearch import pins
    from autoresearch.workspace import Workspace, accept_settings, settings_diff

    ws = Workspace.find(where)
    if accept:
        with ws.state.locked("autoresearch settings --accept"):
            ws, line = accept_settings(ws)
        click.echo(line)
        return
    click.echo(f"# the settings of {ws.root}, pinned in {pins.where(ws.root)}")
    click.echo(ws.settings_text, nl=False)
    diff = settings_diff(ws)
    if not diff:
        click.echo("# the working tree's autoresearch.toml matches the pinned settings")
        return
    click.echo("# the working tree's autoresearch.toml differs from the pinned settings; the engine reads only the "
               "pinned ones (`autoresearch settings --accept` makes the tree's the settings):")
    for line in diff:
        click.echo(line)


@main.command(short_help='Where the research stands, and what runs now.')
@click.option("-C", "--workspace", "where", default=".", type=click.Path(), help="Workspace folder.")
@click.option("--results", "results", default=None, type=click.Path(), help="A results.tsv to read instead of the workspace's.")
@click.option("--branch", default=None, help="Research branch whose experiments to count (default: the checked-out one).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@clean_errors
def status(where, results, branch, as_json):
    """Where the research stands: frontier, counts, pace, noise, the running experiment."""
    from autoresearch.views import terminal

    terminal.status(where, results, as_json=as_json, branch=branch)


@main.command(short_help='Write progress.png and report.md.')
@click.option("-C", "--workspace", "where", default=".", type=click.Path(), help="Workspace folder.")
@click.option("--results", "results", default=None, type=click.Path(), help="A results.tsv to read (works without a workspace).")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), help="Folder for progress.png and report.md (default: beside results.tsv).")
@click.option("--direction", default=None, type=click.Choice(["lower", "higher"]), help="Which way is better (default: the workspace's, else lower).")
@click.option("--branch", default=None, help="Research branch to report on (default: the checked-out one).")
@clean_errors
def report(where, results, out, direction, branch):
    """Write progress.png and report.md from results.tsv."""
    from autoresearch.views import report as report_mod

    png, md = report_mod.report(where, results, out, direction, branch)
    click.echo(f"wrote {png}")
    click.echo(f"wrote {md}")


@main.command(short_help='A live, read-only web page on this machine.')
@click.argument("workspaces", nargs=-1, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback unless told otherwise).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free port).")
@clean_errors
def dashboard(workspaces, host, port):
    """A live, read-only web page over WORKSPACES (default: the one you are in)."""
    from autoresearch.views.dashboard import serve

    serve(workspaces, host=host, port=port)


@main.command("agents", short_help='List the researcher agents and whether each is ready.')
@click.option("--model", default=None, help="Model to check the agents with.")
@click.option("--base-url", default=None, help="Base URL for the API agents (e.g. a local OpenAI-compatible server).")
@click.option("--agent-command", default=None, help="Command for the `command` agent.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per agent, one per line.")
@clean_errors
def agents_cmd(model, base_url, agent_command, as_json):
    """List the installed researcher agents and whether each is ready (calls none of them)."""
    import json

    from autoresearch import agents

    found = agents.statuses(model=model, base_url=base_url, agent_command=agent_command)
    if not found:
        click.echo("no agents installed")
        return
    width = max(len(s.name) for s in found)
    for s in found:
        if as_json:
            click.echo(json.dumps({"name": s.name, "package": s.package, "ready": s.ready,
                                   "problem": s.problem, "description": s.description}))
            continue
        state = "ready" if s.ready else f"not ready: {s.problem}"
        origin = "" if s.package in ("", "autoresearch") else f" [{s.package}]"
        click.echo(f"{s.name:<{width}}  {state}")
        if s.description:
            click.echo(f"{'':<{width}}  {s.description}{origin}")


@main.command(short_help='Run one guarded experiment of the current edits.')
@click.option("-d", "--description", required=True, help="What you changed, in one line.")
@click.option("-C", "--workspace", "where", default=".", type=click.Path(file_okay=False), help="Workspace folder.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the few lines.")
@clean_errors
def experiment(description, where, as_json):
    """Guard, commit, run, measure, record, keep or reset: one experiment with the current edits."""
    import json

    from autoresearch.engine import Engine
    from autoresearch.engine.pool import one_experiment
    from autoresearch.proc import sigterm_as_interrupt
    from autoresearch.workspace import Workspace

    ws = Workspace.find(where)
    quiet = (lambda line: click.echo(line, err=True)) if as_json else None
    from autoresearch import sandbox

    click.echo(sandbox.detect().describe(), err=as_json)
    with sigterm_as_interrupt():
        try:
            with ws.state.locked("autoresearch experiment"):
                outcome = one_experiment(Engine(ws, out=quiet, live=False if as_json else None), description)
        except KeyboardInterrupt:
            click.echo("interrupted: finished runs are recorded, the one in flight as interrupted; "
                       "the tree is back at the frontier", err=True)
            sys.exit(130)
    if as_json:
        click.echo(json.dumps(outcome.to_json()))


@main.command(short_help='Research unattended until stopped (the main command).')
@click.option("-C", "--workspace", "where", default=".", type=click.Path(file_okay=False),
              help="Where to run: a workspace, or a folder where ./research is created.")
@click.option("--tag", default=None, help="Research branch autoresearch/TAG (default: resume the current one, else the date).")
@click.option("--agent", default="builtin", show_default=True, help="Who proposes changes (`autoresearch agents` lists them).")
@click.option("--max-experiments", type=COUNT, default=None,
              help="Stop after this many experiments (default: no limit; 0 runs only the baseline).")
@click.option("--hours", type=SECONDS, default=None, help="Start no experiment after this many hours (default: no limit).")
@click.option("--max-cost", type=AMOUNT, default=None,
              help="Stop when the agent's reported cost reaches this many USD (default: no limit).")
@click.option("--model", default=None, help="Model for the agent.")
@click.option("--base-url", default=None, help="Base URL for API agents (e.g. a local OpenAI-compatible server).")
@click.option("--agent-command", default=None, help="Command for the `command` agent.")
@click.option("--agent-timeout", type=SECONDS, default=None,
              help="Seconds the agent may take per proposal (default: 1800 for claude, codex, aider and "
                   "command; 600 for anthropic and openai).")
@click.option("--require-sandbox", is_flag=True,
              help="Refuse to train without a sandbox (bubblewrap on Linux); also `require_sandbox = true` "
                   "in autoresearch.toml.")
@click.option("--workers", default=None, metavar="N|auto",
              help="Experiments in flight at once: one per GPU on NVIDIA (auto: every GPU), else N slots sharing "
                   "the CPU cores. The agent proposes the next while they train (default: one at a time).")
@click.option("--ray", "ray_address", default=None, is_flag=False, flag_value="auto", metavar="[ADDRESS]",
              help="Run the workers as actors of a Ray cluster (one GPU each, on any node): the one `ray start` "
                   "made on this machine, or ADDRESS. Needs `pip install \"autoresearch[ray]\"`.")
@click.option("--track", default=None, metavar="TRACKER",
              help="Send every run to an experiment tracker: mlflow (to MLFLOW_TRACKING_URI, else a store beside the "
                   "engine's records; needs `pip install \"autoresearch[mlflow]\"`). Also `track = \"mlflow\"` in "
                   "autoresearch.toml. A tracker that is down never stops the research: runs wait in a queue.")
@clean_errors
def run(where, tag, agent, max_experiments, hours, max_cost, model, base_url, agent_command, agent_timeout,
        require_sandbox, workers, ray_address, track):
    """The unattended loop: baseline, then propose, experiment, keep or reset, until stopped.

    Outside a workspace it creates ./research (profile auto, offline data) and uses it from then
    on. Without --max-experiments, --hours or --max-cost it runs until Ctrl-C, which stops it
    cleanly (finished runs are kept, the one in flight is recorded as interrupted); `run` again
    resumes the same branch.
    """
    import os

    from autoresearch import loop, sandbox

    if require_sandbox:
        found = sandbox.detect()
        if not found.on:
            raise AutoresearchError(f"no sandbox for training here ({found.why}); --require-sandbox refuses to run")
        os.environ["AUTORESEARCH_REQUIRE_SANDBOX"] = "1"
    from autoresearch.engine import slots

    plan = loop.Plan(agent=agent, tag=tag, max_experiments=max_experiments, hours=hours, max_cost=max_cost,
                     workers=slots.parse_count(workers) if workers is not None else None, ray=ray_address,
                     track=track, agent_options={"model": model, "base_url": base_url, "agent_command": agent_command,
                                    "agent_timeout": agent_timeout})
    summary = loop.run(where, plan)
    if summary.interrupted:
        sys.exit(130)


@main.command(short_help="Measure which kept changes hold up: finalize.md and a clean branch.")
@click.option("-C", "--workspace", "where", default=".", type=click.Path(file_okay=False), help="Workspace folder.")
@click.option("--branch", default=None, help="The line of research (default: the current research branch).")
@click.option("--plan", "plan_only", is_flag=True, help="Say which tests it would run and how long they take; run nothing.")
@clean_errors
def finalize(where, branch, plan_only):
    """For each kept change of a line, run the final frontier against the frontier without that
    change (and the frontier against the baseline), with the keep rule deciding as it does at
    night; then write finalize.md (claimed gain, gain that held up, verdict) and the branch
    <line>-final: the baseline with only the changes that held up, one commit each. It says how
    many runs it will make first; Ctrl-C stops it, and finalize again goes on where it stopped."""
    from autoresearch import sandbox
    from autoresearch.engine import Engine
    from autoresearch.engine import finalize as fin
    from autoresearch.proc import sigterm_as_interrupt
    from autoresearch.workspace import Workspace

    ws = Workspace.find(where)
    with sigterm_as_interrupt():
        try:
            with ws.state.locked("autoresearch finalize"):
                engine = Engine(ws)
                note = engine.recover()
                if note:
                    click.echo(note)
                line = branch or engine.branch()
                if plan_only:
                    job = fin.Finalize(engine, line, click.echo)
                    job.announce(job.record())
                    return
                click.echo(sandbox.detect().describe())
                fin.finalize(engine, line, click.echo)
        except KeyboardInterrupt:
            click.echo("stopped: its finished runs are kept; `autoresearch finalize` goes on where it stopped", err=True)
            sys.exit(130)


@main.command(short_help="Send the runs queued for an experiment tracker now.")
@click.option("-C", "--workspace", "where", default=".", type=click.Path(file_okay=False), help="The workspace.")
@click.option("--to", "name", default=None, metavar="TRACKER",
              help="The tracker (default: the workspace's `track` setting, else mlflow).")
@clean_errors
def track(where, name):
    """Send every recorded run the tracker has not got yet (a tracker that was down during
    `autoresearch run`, or a workspace that ran before tracking was on), in order, and say how
    many are left."""
    from autoresearch import tracking
    from autoresearch.workspace import Workspace

    ws = Workspace.find(where)
    tracker = tracking.load(name or ws.config.track or "mlflow", ws)
    sender = tracking.Sender(ws, tracker, click.echo)
    with ws.state.locked("autoresearch track"):  # never beside a run's own sender
        queued = sender.pending()
        click.echo(f"{queued} run{'s' if queued != 1 else ''} queued for {tracker.name} at {tracker.where()}")
        sender.send_pending(until=float("inf"))
        left = sender.pending()
    if left:
        raise AutoresearchError(f"{left} run{'s' if left != 1 else ''} still queued: {sender.down or 'not sent'}")
    click.echo(f"sent {sender.sent}" + (f" ({tracker.hint()})" if tracker.hint() else ""))


if __name__ == "__main__":  # pragma: no cover
    main()
