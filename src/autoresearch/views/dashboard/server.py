"""The dashboard's HTTP side: a small read-only Starlette app over one or more sources.

Routes:
  GET /                      the page (static/index.html)
  GET /static/<file>         the page's script and style, shipped in the package
  GET /api/state?w=I&since=S the snapshot of source I with its rows; `{"unchanged": true}`
                             while nothing it is built from changed since signature S
  GET /api/detail?w=I&row=R  row R's diff against its parent and, for the latest run, the
                             run.log tail (R = "running" for the experiment in flight)

Nothing here writes to a workspace: git is only asked to read (rev-parse, cat-file, show).
The page polls /api/state about once a second; a cheap signature (sizes and mtimes of the
files a snapshot reads, plus whether the recorded processes are alive) spares rebuilding
the snapshot when nothing moved. Requests with a Host header other than the bound
loopback names are refused, so a web page elsewhere cannot read the workspace through
DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import sys
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from autoresearch.errors import AutoresearchError
from autoresearch.views.snapshot import Source, commit_diff, log_tail, open_source, pid_alive, snapshot

STATIC = Path(__file__).parent / "static"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8765
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """ASGI middleware: loopback Host check (when bound to loopback) and security headers."""

    def __init__(self, app, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.loopback_only:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if not is_loopback(_host_of(host)):
                response = PlainTextResponse("this dashboard answers on its loopback address only", status_code=421)
                return await response(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def signature(source: Source) -> str:
    """Changes whenever anything a snapshot reads changes: "ROWS~LIVE".

    ROWS covers results.tsv and the checked-out commit; LIVE the run log and the engine's
    state files (and whether their processes are alive). While an experiment trains only
    LIVE moves, and the rows need not be sent again.
    """
    def stamp(path: Path) -> str:
        try:
            st = path.stat()
            return f"{st.st_mtime_ns}:{st.st_size}"
        except OSError:
            return "-"

    rows = [source.results_path, source.rows_path, source.root / ".git" / "HEAD"]
    try:
        head = (source.root / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            rows.append(source.root / ".git" / head[5:])
    except OSError:
        pass
    live = [stamp(source.log_path)]
    state = source.state
    for name, record in (("current.json", state.current()), ("loop.json", state.loop())):
        live.append(stamp(state.file(name)) + ("+" if record is not None and pid_alive(record.pid) else ""))
    for c in state.worker_runs():  # a pool's workers: each its run (a new one has a new start) and its log
        live.append(f"{c.worker}:{c.commit}:{c.started_at}:{c.pid}:{stamp(source.worker_log_path(c.worker))}"
                    + ("+" if pid_alive(c.pid) else ""))
    return "|".join(stamp(p) for p in rows) + "~" + "|".join(live)


def unique_names(sources: list[Source]) -> list[str]:
    names = [s.name for s in sources]
    out = []
    for s, name in zip(sources, names):
        out.append(f"{s.root.parent.name}/{name}" if names.count(name) > 1 else name)
    return out


class Dashboard:
    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self.names = unique_names(sources)
        self._cache: dict[int, tuple[str, dict]] = {}
        self._lock = threading.Lock()

    def source(self, request: Request) -> tuple[int, Source]:
        try:
            index = int(request.query_params.get("w", "0"))
            return index, self.sources[index]
        except (ValueError, IndexError):
            raise LookupError(f"no workspace number {request.query_params.get('w')!r}") from None

    def state(self, index: int, source: Source) -> tuple[str, dict]:
        sig = signature(source)
        with self._lock:
            cached = self._cache.get(index)
        if cached and cached[0] == sig:
            return cached
        try:
            snap = snapshot(source, with_rows=True).to_json()
        except Exception as exc:  # noqa: BLE001 - the page must show a line, never a stack trace
            snap = {"name": source.name, "root": str(source.root), "error": f"cannot read the workspace: {exc}",
                    "summary": None, "rows": [], "running": None}
        snap["log_owner"] = log_owner(snap)
        with self._lock:
            self._cache[index] = (sig, snap)
        return sig, snap

    # --- endpoints (plain functions: Starlette runs them in its thread pool) ---

    def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    def api_state(self, request: Request) -> Response:
        try:
            index, source = self.source(request)
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        sig, snap = self.state(index, source)
        body = {"sig": sig, "workspaces": self.names, "w": index}
        since = request.query_params.get("since", "")
        if since == sig:
            body["unchanged"] = True
        elif since.split("~")[0] == sig.split("~")[0]:  # only the live part moved: spare the rows
            body["snapshot"] = {k: v for k, v in snap.items() if k != "rows"}
            body["rows_unchanged"] = True
        else:
            body["snapshot"] = snap
        return JSONResponse(plain(body), headers={"cache-control": "no-store"})

    def api_detail(self, request: Request) -> Response:
        try:
            index, source = self.source(request)
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        _, snap = self.state(index, source)
        which = request.query_params.get("row", "")
        rows = snap.get("rows") or []
        owner = snap.get("log_owner")
        if which == "running":
            current = snap.get("running")
            if not current:
                return JSONResponse({"error": "no experiment is running"}, status_code=404)
            commit, title, key = current.get("commit", ""), current.get("description", ""), "running"
        else:
            try:
                row = rows[int(which)]
            except (ValueError, IndexError):
                return JSONResponse({"error": f"no experiment {which!r}"}, status_code=404)
            commit, title, key = row["commit"], row["description"], row["index"]
        diff = commit_diff(source, commit) if commit else {"ok": False, "text": "", "message": "no commit recorded"}
        if owner is not None and owner == key:
            text = log_tail(source)
            log = {"available": text is not None, "text": text or "",
                   "note": "" if text is not None else "run.log does not exist"}
        else:
            if owner == "running":
                note = "only the latest run's log is kept: run.log now holds the running experiment's output"
            elif owner is None:
                note = "no run log: nothing has run yet"
            else:
                note = f"only the latest run's log is kept: run.log belongs to run #{owner + 1}"
            log = {"available": False, "text": "", "note": note}
        return JSONResponse({"row": key, "commit": commit, "description": title, "diff": diff, "log": log},
                            headers={"cache-control": "no-store"})


def plain(value):
    """JSON-safe: non-finite floats become null (JSON has no inf), other objects their text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def log_owner(snap: dict):
    """Whose output run.log holds: "running", the index of the last row whose run started on
    the machine (Row.used_machine), or None."""
    current = snap.get("running")
    if current and current.get("alive"):
        return "running"
    for row in reversed(snap.get("rows") or []):
        if row["used_machine"]:
            return row["index"]
    return None


def create_app(sources: list[Source], loopback_only: bool = True):
    dash = Dashboard(sources)
    app = Starlette(routes=[
        Route("/", dash.page),
        Route("/api/state", dash.api_state),
        Route("/api/detail", dash.api_detail),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
    return HostCheck(app, loopback_only)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one clear AutoresearchError (port in use, bad address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AutoresearchError(f"cannot serve on {host}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise AutoresearchError(f"port {port} is in use on {host}; stop what holds it or choose another with --port") from exc
        raise AutoresearchError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def serve(paths=(), host: str = "127.0.0.1", port: int = 8765, echo=None) -> None:
    """`autoresearch dashboard`: serve the sources until Ctrl-C."""
    import uvicorn

    echo = echo or (lambda line, err=False: print(line, file=sys.stderr if err else sys.stdout, flush=True))
    sources = [open_source(p) for p in (paths or ["."])]
    loopback = is_loopback(host)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if not loopback:
        echo(f"warning: serving on {host}, not loopback: anyone who can reach this machine can read "
             "these workspaces' diffs and logs", err=True)
    for source in sources:
        if not source.results_path.exists():
            echo(f"note: {source.root}: no results.tsv yet (the page will say so and update when it appears)", err=True)
    echo(f"dashboard: http://{shown}:{actual}/  ({len(sources)} workspace{'s' if len(sources) != 1 else ''}, "
         "read-only; Ctrl-C to stop)")
    config = uvicorn.Config(create_app(sources, loopback_only=loopback), log_level="warning", access_log=False,
                            lifespan="off", server_header=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["create_app", "serve", "bind", "signature"]
