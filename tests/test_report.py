"""`autoresearch report`: progress.png and report.md from a results.tsv alone."""

from __future__ import annotations

import html

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt
from PIL import Image

from autoresearch.errors import AutoresearchError
from autoresearch.research import keeprule
from autoresearch.research.history import History
from autoresearch.research.results import parse
from autoresearch.resultsfile import read
from autoresearch.views import report as report_mod
from autoresearch.views import snapshot

from support import cli

FIXTURES = Path(__file__).parent / "fixtures"
OURS = FIXTURES / "results_ours.tsv"
UPSTREAM = FIXTURES / "results_upstream.tsv"
SIZE = (report_mod.WIDTH * report_mod.DPI, report_mod.HEIGHT * report_mod.DPI)


def pixels(path: Path, color: str, tol: int = 10) -> int:
    """How many pixels of the image are within `tol` of `color` on every channel."""
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image - rgb).max(axis=2) <= tol).sum())


def test_report_from_our_results_draws_kept_crashed_and_lists_changes(tmp_path):
    png, md = report_mod.report(results=OURS, out=tmp_path)
    assert (png, md) == (tmp_path / "progress.png", tmp_path / "report.md")
    assert Image.open(png).size == SIZE
    assert pixels(png, report_mod.KEEP_COLOR) > 300
    assert pixels(png, report_mod.CRASH_COLOR) > 20
    assert pixels(png, report_mod.FRONTIER_COLOR) > 300  # the step line

    text = md.read_text()
    kept = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    # the baseline and five kept changes, in order, each with its commit
    assert [line.split("`")[1] for line in kept] == ["c0a1b2c", "d1e2f30", "b5c6d74", "f9a0b18", "1b2c3da", "3d4e5fc"]
    assert "baseline: 1.483230 (mean of 2 runs of its commit)" in text
    assert "frontier: 1.440250 at commit `3d4e5fc`" in text
    assert "| -0.012210 |" in kept[1]  # delta to the frontier before it
    assert "mean of 2 runs; confirmed by re-run" in kept[2]  # a confirmed win: both runs count
    assert "simplification" in kept[4] and "+0.000300" in kept[4]
    sigma = keeprule.noise(read(FIXTURES / "results_ours.tsv")[1]).sigma
    assert f"σ = {sigma:.6f}" in text and "from 4 repeated runs" in text  # the keep rule's estimate
    assert "NameError" in text  # the crash is listed with its reason


def test_kept_markers_are_what_carries_the_kept_colour(tmp_path):
    """Turning the kept experiments into discards removes their green markers from the plot."""
    text = OURS.read_text()
    lines = text.splitlines(keepends=True)
    demoted = lines[0] + "".join(
        line if "\tbaseline\t" in line else line.replace("\tkeep\t", "\tdiscard\t") for line in lines[1:]
    )
    metric, rows = parse(text)
    _, fewer = parse(demoted)
    report_mod.plot(History(rows), tmp_path / "all.png", metric=metric)
    report_mod.plot(History(fewer), tmp_path / "fewer.png", metric=metric)
    removed = 6  # kept rows that are not baseline runs
    assert pixels(tmp_path / "all.png", report_mod.KEEP_COLOR) - pixels(tmp_path / "fewer.png", report_mod.KEEP_COLOR) > removed * 40


def test_report_from_the_original_five_column_format(tmp_path):
    png, md = report_mod.report(results=UPSTREAM, out=tmp_path)
    assert Image.open(png).size == SIZE
    assert pixels(png, report_mod.KEEP_COLOR) > 200
    assert pixels(png, report_mod.CRASH_COLOR) > 10
    text = md.read_text()
    # no kind column: the first row is the baseline, as in the original
    assert "baseline: 0.998100" in text and "frontier: 0.987700 at commit `5c6d7e8`" in text
    kept = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    assert [line.split("`")[1] for line in kept] == ["4f1e2d3", "7a8b9c0", "0d1e2f3", "2f3a4b5", "5c6d7e8"]
    assert "noise:" not in text  # nothing was run twice: no estimate, no band
    assert "pace:" not in text  # no timestamps in the original's format


def test_empty_results_give_an_empty_plot_without_markers(tmp_path):
    results = tmp_path / "results.tsv"
    results.write_text(UPSTREAM.read_text().splitlines()[0] + "\n")
    png, md = report_mod.report(results=results)
    assert png.parent == tmp_path  # default: beside the results file
    assert Image.open(png).size == SIZE
    assert pixels(png, report_mod.KEEP_COLOR) == 0
    assert "Nothing was kept." in md.read_text()


def test_higher_is_better_direction(tmp_path):
    results = tmp_path / "results.tsv"
    results.write_text(
        "commit\taccuracy\tmemory_gb\tstatus\tdescription\n"
        "aaaaaaa\t0.800000\t0.0\tkeep\tbaseline\n"
        "bbbbbbb\t0.750000\t0.0\tdiscard\tworse\n"
        "ccccccc\t0.850000\t0.0\tkeep\tbetter\n"
    )
    png, md = report_mod.report(results=results, direction="higher")
    text = md.read_text()
    assert "`accuracy`, higher is better" in text
    assert "change: +0.050000 (frontier minus baseline" in text  # new minus old: a win is positive here
    assert pixels(png, report_mod.KEEP_COLOR) > 100


def test_cli_report_in_a_workspace_and_with_results(tmp_path):
    out = tmp_path / "out"
    done = cli("report", "--results", str(UPSTREAM), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "progress.png").is_file() and (out / "report.md").is_file()
    assert f"wrote {out / 'progress.png'}" in done.stdout


@pytest.mark.parametrize("content, message", [
    (None, "does not exist yet"),
    ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\tnot-a-number\t1.0\tkeep\tx\n", "line 2 is malformed"),
    ("this is not a results file\n", "line 1 is not a results header"),
    ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc\t1.0\t1.0\tmaybe\tx\n", "unknown status 'maybe'"),
])
def test_cli_report_bad_results_is_one_clear_line(tmp_path, content, message):
    results = tmp_path / "results.tsv"
    if content is not None:
        results.write_text(content)
    done = cli("report", "--results", str(results))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and message in done.stderr
    assert not (tmp_path / "progress.png").exists()


def test_report_outside_a_workspace_without_results_is_refused(tmp_path):
    with pytest.raises(AutoresearchError, match="not inside an autoresearch workspace"):
        report_mod.report(tmp_path)


def test_descriptions_are_text_not_math_or_markup(tmp_path):
    """A description is drawn as written: `$` never starts matplotlib math, `[` never rich markup."""
    results = tmp_path / "results.tsv"
    hostile = r"cut cost $\frac{1}{ by [red]half[/blue]"
    results.write_text(
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
        "aaaaaaa\t1.000000\t1.0\tkeep\tbaseline\n"
        f"bbbbbbb\t0.900000\t1.0\tkeep\t{hostile}\n"
    )
    png, md = report_mod.report(results=results)
    assert Image.open(png).size == SIZE
    done = cli("status", "--results", str(results))
    assert done.returncode == 0, done.stderr
    rendered = MarkdownIt("commonmark").enable("table").render(md.read_text())
    assert html.escape(hostile, quote=False) in rendered  # shown as written


def test_a_description_renders_as_its_text_in_report_md(tmp_path):
    """The agent writes descriptions: rendered, report.md must not fetch an image from anywhere
    (a way out of a machine the agent has no network on), link to javascript: or carry HTML."""
    results = tmp_path / "results.tsv"
    hostile = ("tune <img src=x onerror=alert(1)> ![t](http://127.0.0.1:9/track.png) [c](javascript:alert(1)) "
               "<script>alert(2)</script> **bold** `code` &lt;b&gt; learning_rate | pipe")
    results.write_text(
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
        "aaaaaaa\t1.000000\t1.0\tkeep\tbaseline\n"
        f"bbbbbbb\t0.900000\t1.0\tkeep\t{hostile}\n"
        f"ccccccc\t0.950000\t1.0\tdiscard\t{hostile}\n"
    )
    _, md = report_mod.report(results=results)
    rendered = MarkdownIt("commonmark").enable("table").render(md.read_text())
    assert rendered.count("<img") == 1 and '<img src="progress.png"' in rendered  # the report's own plot only
    for tag in ("<a ", "<script", "<strong", "<code>code", "<em"):
        assert tag not in rendered, tag
    assert html.escape(hostile, quote=False) in rendered  # shown as written


# ---------------------------------------------------------------- the plot and the report tell the truth


def rows_of(text: str) -> list:
    return parse("commit\tval_bpb\tmemory_gb\tstatus\tdescription\tkind\n" + text)[1]


def test_the_line_the_views_draw_is_the_frontier_after_each_run():
    """The frontier's mean rises on a second baseline run, a frontier re-run that comes in worse and
    a simplification kept within the noise: the line the report and the dashboard draw is that
    frontier (History.series), the value their titles and cards give, not the best run so far."""
    rows = rows_of(
        "aaaaaaa\t1.000000\t1.0\tkeep\tbaseline\tbaseline\n"
        "aaaaaaa\t1.020000\t1.0\tkeep\tbaseline\tbaseline\n"
        "bbbbbbb\t0.900000\t1.0\tkeep\tbetter\texperiment\n"
        "bbbbbbb\t0.960000\t1.0\tkeep\tfrontier re-run\tconfirm\n"
        "ccccccc\t0.940000\t1.0\tkeep\tsimpler, within noise\texperiment\n"
        "ddddddd\t0.800000\t1.0\tkeep\tmuch better\texperiment\n"
    )
    lower = History(rows, direction="lower")
    assert lower.series == pytest.approx([1.0, 1.01, 0.9, 0.93, 0.94, 0.8])  # the engine's frontier
    assert [d["frontier"] for d in snapshot.row_dicts(lower)] == pytest.approx(lower.series)  # what the dashboard draws
    higher = History([replace(r, value=2 - r.value) for r in rows], direction="higher")
    assert higher.series == pytest.approx([1.0, 0.99, 1.1, 1.07, 1.06, 1.2])


@pytest.mark.parametrize("direction", ["lower", "higher"])
def test_the_noise_band_is_whole_inside_the_y_limits(direction):
    metric, rows = read(OURS)
    if direction == "higher":
        rows = [replace(r, value=3 - r.value) if keeprule.measured(r) else r for r in rows]
    history = History(rows, direction=direction)
    s = snapshot.summarize(history, metric, judged=True)
    line = [v for v in history.series if v is not None]
    lo, hi = report_mod.y_limits(history, s)
    assert s.keep_bar and lo < min(line) - s.keep_bar and max(line) + s.keep_bar < hi


def test_interrupted_runs_are_drawn_and_listed_as_such_not_as_crashes(tmp_path):
    text = OURS.read_text()
    stopped = text.replace("\tcrash\t", "\tinterrupted\t").replace("NameError: name 'gelu' is not defined", "interrupted")
    md = report_mod.markdown(History(parse(stopped)[1]))
    assert "## Crashes" not in md and "1 crash" not in md
    # numbered as `autoresearch run` numbered the experiment (the third after two baseline runs)
    assert "## Interrupted" in md and "- #3 `f3a4b52` swap ReLU^2 for GELU in MLP" in md and "1 interrupted)" in md

    crashed_png, stopped_png = tmp_path / "crashed.png", tmp_path / "stopped.png"
    report_mod.plot(History(parse(text)[1]), crashed_png)
    report_mod.plot(History(parse(stopped)[1]), stopped_png)
    assert pixels(crashed_png, report_mod.INTERRUPTED_COLOR) == 0
    assert pixels(stopped_png, report_mod.INTERRUPTED_COLOR) > 40  # its marker and its legend entry
    assert pixels(crashed_png, report_mod.CRASH_COLOR) - pixels(stopped_png, report_mod.CRASH_COLOR) > 20  # no cross


def test_baseline_runs_are_counted_as_baseline(tmp_path):
    png, md = report_mod.report(results=OURS, out=tmp_path)
    # 8 rows are status keep: 2 of them are the baseline runs and 1 a confirm run of a kept change
    assert "13 experiments (5 keep, 5 discard, 1 crash, 1 invalid, 1 noop); 2 baseline runs" in md.read_text()
    assert pixels(png, report_mod.BASELINE_COLOR) > 100  # the baseline runs' diamonds and the dashed line


def test_rates_are_held_back_while_too_early(tmp_path):
    """Two baseline runs and two experiments over five minutes make no pace yet."""
    results = tmp_path / "results.tsv"
    results.write_text("".join(OURS.read_text().splitlines(keepends=True)[:5]))
    s = snapshot.summarize(History(read(results)[1]))
    assert s.experiments_per_hour is not None and not s.rates_meaningful and "too early" in s.rates_note
    text = report_mod.report(results=results)[1].read_text()
    assert "- pace: — (too early" in text and "per hour" not in text and "wall-clock" not in text
    full = snapshot.summarize(History(read(OURS)[1]))
    assert full.rates_meaningful and "experiments per hour" in report_mod.markdown(History(read(OURS)[1]))


def test_report_files_are_readable_by_others_as_usual(tmp_path):
    """report.md and progress.png get a new file's usual mode (0644 under umask 022), not 0600."""
    import subprocess
    import sys

    for _ in range(2):  # written, then replaced
        done = subprocess.run([sys.executable, "-m", "autoresearch", "report", "--results", str(OURS), "--out", str(tmp_path)],
                              capture_output=True, text=True, umask=0o022, timeout=120)
        assert done.returncode == 0, done.stderr
        for name in ("report.md", "progress.png"):
            assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o644), name


def test_a_link_planted_where_the_report_writes_its_picture_is_replaced_not_written_through(tmp_path):
    """The picture is written whole beside its name and renamed over it: a link at progress.png, or at
    any name the drawing once used for its temporary file, leaves the file it points at as it was."""
    victims = {name: tmp_path / f"victim-{i}" for i, name in
               enumerate(("progress.png", ".progress.png.tmp.png", "report.md"))}
    for name, victim in victims.items():
        victim.write_text("the engine's records\n")
        (tmp_path / name).symlink_to(victim)
    report_mod.report(results=OURS, out=tmp_path)
    for name, victim in victims.items():
        assert victim.read_text() == "the engine's records\n", name
    assert not (tmp_path / "progress.png").is_symlink() and Image.open(tmp_path / "progress.png").size == SIZE
    assert not (tmp_path / "report.md").is_symlink()
