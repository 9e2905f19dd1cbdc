"""Pure research logic: results rows, the history of a line of research, the keep rule.

Nothing here does I/O or imports anything else from the package, so every number can be
tested on hand-written rows and is computed the same way wherever it is shown.
"""
