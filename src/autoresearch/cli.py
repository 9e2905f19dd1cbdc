"""The command line: thin wrappers that parse options and call one module each.

Every AutoresearchError becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from autoresearch import __version__
from autoresearch.errors import AutoresearchError


def clean_errors(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AutoresearchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autoresearch")
def main() -> None:
    """Autonomous ML research: an agent edits train.py, trains for a fixed time budget,
    and keeps the change only if val_bpb beat the best so far by more than the noise."""


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--profile", default="auto", show_default=True,
              type=click.Choice(["auto", "cuda-large", "cuda", "mps", "cpu"]),
              help="Model size and budget; auto picks from the hardware.")
@click.option("--dataset", default=None, help="climbmix, tinystories, pysource (offline) or files:PATH. Default: per profile.")
@click.option("--budget", type=float, default=None, help="Seconds of training per experiment (overrides the profile).")
@click.option("--template", default="llm", show_default=True, type=click.Choice(["llm", "blank"]),
              help="llm: the GPT harness; blank: any command that prints `NAME: value` lines.")
@click.option("--command", "command", default=None, help="Run command (blank template).")
@click.option("--metric", default=None, help="Metric name to optimise (blank template).")
@click.option("--direction", default=None, type=click.Choice(["lower", "higher"]), help="Which way is better.")
@click.option("--editable", multiple=True, help="A file the agent may change (repeatable).")
@clean_errors
def init(directory, profile, dataset, budget, template, command, metric, direction, editable):
    """Create a research workspace (a git repository) in DIRECTORY."""
    from autoresearch.workspace import init_workspace

    ws = init_workspace(directory, profile=profile, dataset=dataset, budget=budget, template=template,
                        command=command, metric=metric, direction=direction, editable=tuple(editable))
    c = ws.config
    click.echo(f"workspace {ws.root}")
    click.echo(f"  template {c.template}, profile {c.profile}, dataset {c.dataset}, budget {c.budget:g} s")
    click.echo(f"  editable: {', '.join(c.editable)}; metric {c.metric} ({c.direction} is better)")
    if c.template == "llm":
        click.echo("next: cd into it, then `autoresearch prepare` and `autoresearch run`")


@main.command()
@click.option("-C", "--workspace", "where", default=".", type=click.Path(file_okay=False), help="Workspace folder.")
@clean_errors
def prepare(where):
    """Download or collect the data and train the tokenizer (idempotent, resumable)."""
    from autoresearch.workspace import Workspace
    from autoresearch import preparing

    ws = Workspace.find(where)
    preparing.prepare(ws)


if __name__ == "__main__":  # pragma: no cover
    main()
