"""A third-party agent package made on the fly: a module plus a dist-info with an entry point."""

from __future__ import annotations

import textwrap
from pathlib import Path

MODULE = textwrap.dedent('''\
    """A third-party researcher: lowers LR a little every call."""
    import re

    from autoresearch.agents import Agent, Proposal, Usage


    class Nudger(Agent):
        name = "nudger"
        description = "a third-party test agent that nudges LR down"

        def propose(self, context):
            path = context.root / context.editable[0]
            text = path.read_text()
            lr = float(re.search(r"^LR = ([0-9.]+)", text, re.M).group(1))
            path.write_text(text.replace(f"LR = {lr}", f"LR = {round(lr - 0.1, 3)}", 1))
            return Proposal(f"LR {lr} -> {round(lr - 0.1, 3)}", Usage(11, 5, 0.001))
''')


def install(site: Path, *, broken: bool = False) -> Path:
    """Write the package into `site` (put it on sys.path or PYTHONPATH); returns `site`."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "nudger_agent.py").write_text(MODULE)
    info = site / "nudger_agent-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nudger-agent\nVersion: 1.0\n")
    points = "[autoresearch.agents]\nnudger = nudger_agent:Nudger\n"
    if broken:
        points += "ghost = no_such_module_anywhere:Ghost\n"
    (info / "entry_points.txt").write_text(points)
    return site
