"""The one domain exception. The CLI turns it into a single clear error line."""


class AutoresearchError(Exception):
    """Something the user can act on: bad input, a broken workspace, a refused change."""
