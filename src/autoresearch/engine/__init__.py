"""The engine: one experiment at a time, guarded, supervised, measured, decided, recorded.

- `guard`: what a change may touch; code that already ran.
- `runner`: one supervised run of the workspace's command.
- `measure`: the metric from the harness's record, the budget by the engine's clock.
- `experiment`: the ratchet (`Engine`), one `Attempt` per candidate.
- `outcome`: the rows and the `Outcome` an experiment produces.
- `recover`: finishing an experiment a dead engine left behind.
"""

from autoresearch.engine.experiment import Engine
from autoresearch.engine.measure import Limits, Measurement
from autoresearch.engine.outcome import Outcome

__all__ = ["Engine", "Limits", "Measurement", "Outcome"]
