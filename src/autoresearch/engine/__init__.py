"""The engine: experiments guarded, supervised, measured, decided, recorded.

- `guard`: what a change may touch; code that already ran.
- `runner`: one supervised run of the workspace's command (`Runner`, the `Runs` protocol).
- `measure`: the metric from the harness's record, the budget by the engine's clock.
- `lifecycle`: the journal of an experiment in flight, the rows of one that was stopped.
- `experiment`: a worker's runs of one candidate until the keep rule decides (`Engine`, `Attempt`).
- `pool`: the life of an experiment from the agent's edit to its record, one at a time or N in flight.
- `outcome`: the rows and the `Outcome` an experiment produces.
- `recover`: finishing the experiments a dead engine left behind.
"""

from autoresearch.engine.experiment import Engine
from autoresearch.engine.measure import Limits, Measurement
from autoresearch.engine.outcome import Outcome

__all__ = ["Engine", "Limits", "Measurement", "Outcome"]
