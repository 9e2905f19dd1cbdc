"""`autoresearch dashboard`: a live, read-only web page over one or more workspaces.

The server (server.py) answers JSON; the page (static/) draws the chart on a canvas and
the table itself, with no library and nothing fetched from elsewhere, so it works offline.
"""

from autoresearch.views.dashboard.server import create_app, serve

__all__ = ["create_app", "serve"]
