"""Agent plugins, found through the entry-point group `autoresearch.agents`.

Built-in agents are registered in our own pyproject.toml exactly as a third-party package
registers its own, so `available()` treats them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from autoresearch.agents.base import Agent, Context, Proposal, Usage
from autoresearch.errors import AutoresearchError

GROUP = "autoresearch.agents"

__all__ = ["Agent", "Context", "Proposal", "Usage", "Status", "available", "load", "statuses"]


def available() -> dict[str, Any]:
    """name -> entry point, for every installed agent (nothing is imported)."""
    return {ep.name: ep for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name)}


def load(name: str, **options: Any) -> Agent:
    found = available()
    if name not in found:
        raise AutoresearchError(f"unknown agent {name!r}; installed: {', '.join(found) or 'none'}")
    try:
        cls = found[name].load()
    except Exception as exc:  # a broken third-party plugin must not crash the CLI
        raise AutoresearchError(f"agent {name!r} failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise AutoresearchError(f"agent {name!r} is not an autoresearch.agents.Agent subclass")
    return cls(**options)


@dataclass(frozen=True)
class Status:
    name: str
    package: str  # the distribution that registers it ("autoresearch" for the built-ins)
    description: str
    problem: str | None  # None: ready; else one line saying what is missing

    @property
    def ready(self) -> bool:
        return self.problem is None


def statuses(**options: Any) -> list[Status]:
    """Every installed agent and whether it is ready, from `check()` alone: nothing is called."""
    out = []
    for name, ep in available().items():
        package = getattr(getattr(ep, "dist", None), "name", "") or ""
        try:
            agent = load(name, **options)
        except AutoresearchError as exc:
            out.append(Status(name, package, "", str(exc)))
            continue
        try:
            problem = agent.check()
        except Exception as exc:  # a plugin's check must not break the listing
            problem = f"check failed: {exc}"
        out.append(Status(name, package, agent.description or type(agent).__doc__ or "", problem))
    return out
