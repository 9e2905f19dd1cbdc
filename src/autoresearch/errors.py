"""The one domain exception. The CLI turns it into a single clear error line."""


class AutoresearchError(Exception):
    """Something the user can act on: bad input, a broken workspace, a refused change."""


class MachineError(AutoresearchError):
    """A failure of this machine rather than of the code under test (prepared data missing, the
    sandbox unable to start): the run says nothing about the code, which may run again."""


class WorkerLost(MachineError):
    """A worker of a pool is gone for good (its Ray actor or its node died)."""
