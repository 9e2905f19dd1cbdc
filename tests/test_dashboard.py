"""`autoresearch dashboard`: a real server process, real HTTP on loopback, a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from support import append_row, cli, commit_change, init_research, llm_like, research_row, write_results

STATIC = Path(__file__).parent.parent / "src" / "autoresearch" / "views" / "dashboard" / "static"

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STARTUP_SECONDS = 60  # a generous ceiling for a loaded 2-core machine, not a performance check
WAIT_MS = 30_000


@contextmanager
def dashboard(*paths: Path, cwd: Path | None = None):
    """Run `python -m autoresearch dashboard --port 0 PATHS…` and yield its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch", "dashboard", "--port", "0", *map(str, paths)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], STARTUP_SECONDS)
        line = proc.stdout.readline() if ready else ""
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            proc.kill()
            raise AssertionError(f"the dashboard did not start: {line!r} {proc.stderr.read()!r}")
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def canvas_pixels(page, colour: str) -> int:
    """How many pixels of the chart's canvas are within 12 of `colour` (#rrggbb) on every channel."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return page.eval_on_selector("#chart", """(c, rgb) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - rgb[0]) < 12 && Math.abs(d[i + 1] - rgb[1]) < 12 && Math.abs(d[i + 2] - rgb[2]) < 12) n++;
        return n;
    }""", rgb)


def browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no browser download needed)")
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return sync_playwright


# ---------------------------------------------------------------- in a real browser


def test_dashboard_in_chromium_live_rows_chart_diff_and_log(research_workspace, tmp_path, sleeper):
    sync_playwright = browser_or_skip()
    root = research_workspace["root"]
    broken = tmp_path / "broken"  # a folder with a results file, no workspace: read as it is
    broken.mkdir()
    (broken / "results.tsv").write_text("commit\tscore\tmemory_gb\tstatus\tdescription\nabc1234\t1.0\n")
    with dashboard(root, broken) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # the page's own CSP forbids eval, which playwright's wait_for_function needs; with the
            # CSP bypassed the request log below (not the CSP) proves that nothing comes from elsewhere
            page = browser.new_page(viewport={"width": 1300, "height": 1000}, bypass_csp=True)
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            external = []
            page.on("request", lambda req: None if req.url.startswith(url) or req.url.startswith("data:") else external.append(req.url))
            page.goto(url + "/")

            # rows and chart
            page.wait_for_function("document.querySelectorAll('#rows tr').length === 6", timeout=WAIT_MS)
            assert page.inner_text("#card-frontier") .split("\n")[1] == "1.800000"
            assert "autoresearch/test" in page.inner_text("#meta")
            chart = page.eval_on_selector("#chart", "c => ({points: c.dataset.points, kept: c.dataset.kept, baseline: c.dataset.baseline})")
            assert chart == {"points": "6", "kept": "2", "baseline": "2"}  # baseline runs are no keeps
            assert canvas_pixels(page, "#1a9850") > 150  # the two kept changes' markers (the baseline runs are diamonds)
            # baseline runs counted as such; 7 minutes are too early for a rate
            assert "4 experiments (2 keep, 1 discard, 1 crash); 2 baseline runs" in page.inner_text("#card-experiments")
            assert "— (too early)" in page.inner_text("#card-rate") and "— (too early)" in page.inner_text("#card-training")
            assert page.eval_on_selector("#rows tr[data-row='0'] td:nth-child(7)", "td => td.textContent") == "baseline"

            # sortable: by the metric, best first
            page.evaluate("window.__same_page = true")
            page.click("th[data-key='value']")
            first = page.eval_on_selector("#rows tr", "tr => tr.dataset.row")
            assert first == "5"  # the frontier, 1.8

            # a new row appears without a reload
            commit = commit_change(root, "# scale by 0.85\nprint('score: 1.7')\n", "scale by 0.85")
            append_row(root, research_row(commit, 1.7, "keep", "scale by 0.85", "experiment", "", 6))
            page.wait_for_function("document.querySelectorAll('#rows tr').length === 7", timeout=WAIT_MS)
            page.wait_for_function("document.querySelector('#card-frontier .value').textContent === '1.700000'", timeout=WAIT_MS)
            assert page.evaluate("window.__same_page") is True
            assert page.eval_on_selector("#chart", "c => c.dataset.points") == "7"

            # a discarded experiment opens its diff against its parent; its log is gone
            page.click("#rows tr[data-row='3']")
            page.wait_for_selector("#diff .add", timeout=WAIT_MS)
            diff = page.inner_text("#diff")
            assert "+# add an offset of 0.05" in diff and "-# scale by 0.95" in diff
            assert "run.log belongs to run #7" in page.inner_text("#log-note")
            # the latest experiment shows the run log's tail
            page.click("#rows tr[data-row='6']")
            page.wait_for_function("document.querySelector('#log').textContent.includes('score: 1.800000')", timeout=WAIT_MS)

            # an experiment in flight: live progress, updated as run.log grows
            state = root / ".autoresearch"
            state.mkdir(exist_ok=True)
            (state / "current.json").write_text(json.dumps({
                "commit": commit, "description": "try a bigger step", "kind": "experiment",
                "started_at": time.time() - 5, "budget": 60, "pid": sleeper, "agent": "openai",
            }))
            with open(root / "run.log", "w") as log:
                log.write("step 00007 | progress 11.0% | loss 2.500000 | remaining 53s\n")
            page.wait_for_function("document.querySelector('#running-text').textContent.includes('step 7')", timeout=WAIT_MS)
            assert "try a bigger step" in page.inner_text("#running-title")
            assert page.eval_on_selector("#rows tr", "tr => tr.dataset.row") == "running"
            with open(root / "run.log", "a") as log:
                log.write("step 00012 | progress 20.0% | loss 2.250000 | remaining 48s\n")
            page.wait_for_function("document.querySelector('#running-text').textContent.includes('step 12')", timeout=WAIT_MS)
            assert "48 s remaining" in page.inner_text("#running-text")

            # a pool's worker (`run --workers N`): its own record and log, one line each
            (state / "workers").mkdir(exist_ok=True)
            (state / "workers" / "w2.log").write_text("step 00003 | progress 5.0% | loss 2.750000 | remaining 57s\n")
            (state / "current-w2.json").write_text(json.dumps({
                "commit": commit, "description": "a wider model", "kind": "experiment", "worker": "w2",
                "started_at": time.time() - 3, "budget": 60, "pid": sleeper, "agent": "openai",
            }))
            page.wait_for_selector("#workers-list li[data-worker='w2']", timeout=WAIT_MS)
            line = page.inner_text("#workers-list li[data-worker='w2']")
            assert line.startswith("w2: ") and "a wider model" in line and "step 3" in line, line
            (state / "current-w2.json").unlink()
            page.wait_for_function("document.querySelector('#workers').hidden", timeout=WAIT_MS)

            # an interrupted run: its status and kind in the table, its own colour, a hollow circle on the chart
            append_row(root, research_row(commit, 0.0, "interrupted", "try a smaller step", "experiment", "interrupted", 7))
            page.wait_for_selector("#rows tr[data-row='7']", timeout=WAIT_MS)
            cells = page.eval_on_selector("#rows tr[data-row='7']", "tr => [...tr.children].map(td => td.textContent)")
            assert cells[5:7] == ["interrupted", "experiment"]
            colour = page.eval_on_selector("#rows tr[data-row='7'] td.status", "td => getComputedStyle(td).color")
            assert colour == "rgb(148, 103, 189)"
            assert page.eval_on_selector("#chart", "c => c.dataset.interrupted") == "1"
            assert canvas_pixels(page, "#9467bd") > 30  # the marker and its legend entry
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            # the second workspace's results.tsv is malformed: a clear line on the page
            page.click("#workspaces button:nth-child(2)")
            page.wait_for_function("!document.querySelector('#error').hidden", timeout=WAIT_MS)
            assert "line 2 has 2 columns, the header has" in page.inner_text("#error")
            assert page.evaluate("document.querySelectorAll('#rows tr').length") == 0

            assert errors == [] and external == []
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


# ---------------------------------------------------------------- over plain HTTP


def test_missing_results_and_unknown_commits_are_answers_not_errors(tmp_path):
    root = init_research(tmp_path / "fresh")
    with dashboard(cwd=root) as url:  # no argument: the workspace you are in
        status, body = get(url + "/api/state")
        assert status == 200
        snap = json.loads(body)["snapshot"]
        assert snap["name"] == "fresh" and "no experiments recorded yet" in snap["error"] and snap["rows"] == []
        status, page = get(url + "/")
        assert status == 200 and "/static/app.js" in page
        # results appear later: the page's next poll sees them
        write_results(root, [research_row("deadbee", 1.0, "keep", "baseline", "baseline", "", 0)])
        snap = json.loads(get(url + "/api/state")[1])["snapshot"]
        assert snap["error"] is None and len(snap["rows"]) == 1
        status, body = get(url + "/api/detail?row=0")
        detail = json.loads(body)
        assert status == 200 and not detail["diff"]["ok"] and "no longer in the repository" in detail["diff"]["message"]
        assert get(url + "/api/detail?row=99")[0] == 404
        assert get(url + "/api/state?w=5")[0] == 404


def test_polling_sends_rows_only_when_they_change(research_workspace):
    root = research_workspace["root"]
    with dashboard(root) as url:
        first = json.loads(get(url + "/api/state?w=0")[1])
        assert len(first["snapshot"]["rows"]) == 6
        sig = first["sig"]
        assert json.loads(get(url + f"/api/state?w=0&since={sig}")[1]) == {
            "sig": sig, "workspaces": ["ws"], "w": 0, "unchanged": True}
        with open(root / "run.log", "a") as log:  # training output moves: the rows stay home
            log.write("step 00004 | progress 4.0% | loss 2.920000 | remaining 96s\n")
        live = json.loads(get(url + f"/api/state?w=0&since={sig}")[1])
        assert live["rows_unchanged"] is True and "rows" not in live["snapshot"] and live["sig"] != sig
        append_row(root, research_row("abcdef0", 1.9, "discard", "more", "experiment", "", 6))
        grown = json.loads(get(url + f"/api/state?w=0&since={live['sig']}")[1])
        assert len(grown["snapshot"]["rows"]) == 7
        # a diverged run recorded as inf is shown without a value, not a server error
        append_row(root, research_row("abcdef1", float("inf"), "discard", "diverged", "experiment", "", 7))
        status, body = get(url + "/api/state?w=0")
        assert status == 200 and json.loads(body)["snapshot"]["rows"][-1]["value"] is None


def test_state_draws_the_frontier_labels_baseline_runs_and_re_runs_and_holds_back_early_rates(research_workspace):
    """The chart's line is the frontier after each row, the value of the cards, also where its mean
    rises (the second baseline run, a frontier re-run that comes in worse); baseline runs, the
    frontier's re-runs and interrupted runs are labelled as such, never as keeps; seven minutes of
    research make no rate yet."""
    root = research_workspace["root"]
    frontier = research_workspace["commits"][5]
    append_row(root, research_row(frontier, 1.9, "keep", "re-run", "rerun", "frontier re-run beside a confirm run", 6))
    append_row(root, research_row("abcdef2", 0.0, "interrupted", "stopped", "experiment", "interrupted", 7))
    with dashboard(root) as url:
        snap = json.loads(get(url + "/api/state")[1])["snapshot"]
    rows, s = snap["rows"], snap["summary"]
    front = [r["frontier"] for r in rows]
    assert front[1] > front[0] and front[6] > front[5]  # the frontier's mean moved the wrong way twice
    assert front == pytest.approx([2.0, 2.002, 1.9, 1.9, 1.9, 1.8, 1.85, 1.85]) and front[-1] == s["frontier"]
    assert [r["label"] for r in rows] == ["baseline", "baseline", "keep", "discard", "crash", "keep", "rerun", "interrupted"]
    assert s["counts"]["keep"] == 2 and s["counts_text"] == (
        "5 experiments (2 keep, 1 discard, 1 crash, 1 interrupted); 2 baseline runs, 1 frontier re-run")
    assert s["rates_meaningful"] is False and "too early" in s["rates_note"] and s["experiments_per_hour"] is not None


def test_only_loopback_host_names_are_answered(research_workspace):
    with dashboard(research_workspace["root"]) as url:
        assert get(url + "/api/state")[0] == 200
        assert get(url + "/api/state", host="localhost:8765")[0] == 200
        status, body = get(url + "/api/state", host="attacker.example:8765")
        assert status == 421 and "loopback" in body


def test_port_in_use_is_one_clear_line(research_workspace):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        done = subprocess.run([sys.executable, "-m", "autoresearch", "dashboard", "--port", str(port), str(research_workspace["root"])],
                              capture_output=True, text=True, timeout=60)
    finally:
        holder.close()
    assert done.returncode == 1
    assert done.stderr == f"error: port {port} is in use on 127.0.0.1; stop what holds it or choose another with --port\n"
    assert done.stdout == ""


def test_a_folder_that_is_not_a_workspace_is_refused(tmp_path):
    done = subprocess.run([sys.executable, "-m", "autoresearch", "dashboard", "--port", "0", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and "not inside an autoresearch workspace" in done.stderr


def test_the_page_ships_everything_it_needs():
    """Works offline: no script, style or font from anywhere but the package itself."""
    names = sorted(p.name for p in STATIC.iterdir())
    assert names == ["app.js", "index.html", "style.css"]
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name


def test_runs_without_a_sandbox_are_flagged_by_status_and_on_the_page(tmp_path):
    root = tmp_path / "ws"
    llm_like(root)
    assert cli("experiment", "-d", "baseline", cwd=root, env={"AUTORESEARCH_SANDBOX": "off"}).returncode == 0
    r = cli("status", cwd=root)
    assert r.returncode == 0 and "2 of 2 runs unsandboxed" in r.stdout, r.stdout
    summary = json.loads(cli("status", "--json", cwd=root).stdout)["summary"]
    assert (summary["unsandboxed"], summary["runs"]) == (2, 2)
    sync_playwright = browser_or_skip()
    with dashboard(root) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#card-sandbox", timeout=WAIT_MS)
            text = page.inner_text("#card-sandbox")
            assert "unsandboxed" in text and "2 of 2 runs" in text
        finally:
            browser.close()
