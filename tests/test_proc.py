"""The process module: one rule for secrets, agent calls stopped with everything they started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autoresearch import logcap, proc


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "HF_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY",
                                  "SERVICE_AUTH", "SESSION_COOKIE", "GH_PRIVATE", "my_apikey"])
def test_credentials_are_secrets(name):
    assert proc.is_secret(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "TOKENIZERS_PARALLELISM", "MY_SETTING", "KEYBOARD_LAYOUT"])
def test_ordinary_variables_are_not(name):
    assert not proc.is_secret(name)


def test_what_is_scrubbed_from_a_run_is_what_is_blanked_from_a_transcript():
    env = {"SERVICE_AUTH": "auth-value-123456", "SESSION_COOKIE": "cookie-value-123456", "PATH": "/usr/bin:/bin",
           "SHORT_TOKEN": "abc"}
    text = "auth-value-123456 cookie-value-123456 /usr/bin:/bin abc"
    assert proc.scrubbed(env) == {"PATH": "/usr/bin:/bin"}
    # every scrubbed value long enough to be worth hiding is blanked, by the same rule
    assert proc.redact(text, env) == "*** *** /usr/bin:/bin abc"


def test_pid_alive_is_true_for_a_running_process_only():
    assert proc.pid_alive(os.getpid()) and proc.pid_alive(str(os.getpid()))
    assert not any(proc.pid_alive(p) for p in (None, "", "x", 0, -1, 2**22 + 12345))


def test_a_folder_whose_maker_died_is_swept_and_a_living_makers_folder_is_not(tmp_path):
    prefix = f"autoresearch-test-{os.getpid()}-"
    made = subprocess.run([sys.executable, "-c", f"from autoresearch import proc; print(proc.own_folder({prefix!r}))"],
                          capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    dead = Path(made.stdout.strip())
    (dead / "handover").mkdir()
    (dead / "handover" / "model.pt2").write_bytes(b"x" * 1000)
    mine = proc.own_folder(prefix)
    other = Path(tempfile.mkdtemp(prefix=prefix))  # a name without a maker's pid: never taken
    try:
        assert dead.is_dir() and proc.orphaned_folders(prefix) == [dead]
        assert proc.sweep_folders(prefix) == [dead]
        assert not dead.exists() and mine.is_dir() and other.is_dir()
    finally:
        for path in (dead, mine, other):
            shutil.rmtree(path, ignore_errors=True)


def test_a_timed_out_agent_call_stops_its_whole_group(tmp_path):
    marker = tmp_path / "child.pid"
    code = (f"import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(marker)!r}, 'w').write(str(c.pid)); time.sleep(60)")
    started = time.monotonic()
    outcome = proc.call([sys.executable, "-c", code], cwd=tmp_path, timeout=2.0)
    assert outcome.timed_out and time.monotonic() - started < 20
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as fh:  # a zombie waiting for init counts as gone
            if fh.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        pytest.fail("the agent's child outlived the call")


def test_a_missing_agent_program_is_one_clear_error(tmp_path):
    from autoresearch.errors import AutoresearchError

    with pytest.raises(AutoresearchError, match="agent program not found: no-such-agent-program"):
        proc.call(["no-such-agent-program"], cwd=tmp_path, timeout=5)


# ---------------------------------------------------------------------------
# supervise: run.log capped, the pipe never holds the engine


def _supervise(tmp_path, code: str, limit: float = 60, **kw) -> tuple[proc.RunOutcome, bytes, float]:
    log = tmp_path / "run.log"
    started = time.monotonic()
    outcome = proc.supervise([sys.executable, "-c", code], tmp_path, dict(os.environ), log, limit, **kw)
    return outcome, log.read_bytes(), time.monotonic() - started


def test_a_flood_of_output_leaves_a_capped_log_with_its_first_and_last_lines(tmp_path):
    # 50 MB in about a second: run.log keeps the head and the tail, one line marks the cut
    code = "import sys\nfor i in range(50_000): sys.stdout.write(f'line {i:06d} ' + 'x' * 987 + '\\n')"
    outcome, data, wall = _supervise(tmp_path, code)
    assert outcome.returncode == 0
    marker = [line for line in data.split(b"\n") if line.startswith(b"[autoresearch: ")]
    assert len(marker) == 1, marker
    assert len(data) <= logcap.LOG_HEAD_BYTES + logcap.LOG_TAIL_BYTES + len(marker[0]) + 2
    assert data.startswith(b"line 000000 " + b"x" * 987 + b"\n")
    assert data.endswith(b"line 049999 " + b"x" * 987 + b"\n")
    # the head (1 MiB) ends mid-line, so the cut line starts with a newline of its own
    assert outcome.log_dropped == 50_000 * 1000 - (len(data) - len(marker[0]) - 2)
    assert marker[0].decode() == (f"[autoresearch: {outcome.log_dropped} bytes of output dropped here; run.log keeps "
                                  f"the first {logcap.LOG_HEAD_BYTES} and the last {logcap.LOG_TAIL_BYTES} bytes]")
    # the cut falls between whole lines: the kept tail starts with a whole line
    after = data.split(marker[0] + b"\n", 1)[1]
    assert after.startswith(b"line ") and len(after.split(b"\n", 1)[0]) == 999
    # the engine keeps up with the writer: the run is not slowed down by the copying
    assert outcome.seconds < 8 and wall < 10


def test_output_under_the_cap_is_kept_as_it_is(tmp_path):
    # stdout flushed before stderr is written: the order must not depend on PYTHONUNBUFFERED
    code = "import sys\nfor i in range(1000): print(i)\nsys.stdout.flush()\nsys.stderr.write('on stderr\\n')"
    outcome, data, _ = _supervise(tmp_path, code)
    expected = "".join(f"{i}\n" for i in range(1000)) + "on stderr\n"
    assert data.decode() == expected and outcome.log_dropped == 0


def test_the_cap_is_a_setting_and_the_cut_line_says_what_was_kept(tmp_path):
    code = "for i in range(100): print(f'{i:03d}')"  # 400 bytes
    outcome, data, _ = _supervise(tmp_path, code, log_cap=(40, 80))
    text = data.decode()
    head, cut, tail = text.split("\n[", 1)[0], "[" + text.split("\n[", 1)[1].split("\n", 1)[0], text.split("]\n", 1)[1]
    assert head == "".join(f"{i:03d}\n" for i in range(10)).rstrip("\n")
    assert tail == "".join(f"{i:03d}\n" for i in range(80, 100))
    assert cut == "[autoresearch: 280 bytes of output dropped here; run.log keeps the first 40 and the last 80 bytes]"
    assert outcome.log_dropped == 280


def test_the_tail_of_a_long_output_is_in_the_log_while_the_run_goes_on(tmp_path):
    # past the cap, then a last line and a long wait: a live reader (read_tail) sees that line
    from autoresearch.files import read_tail

    log = tmp_path / "run.log"
    code = ("import sys, time\nfor i in range(8_000): sys.stdout.write('y' * 1023 + '\\n')\n"
            "print('step 00042 | the latest line', flush=True)\ntime.sleep(60)")
    seen: list[str] = []

    def tick(elapsed):
        text = read_tail(log, 4096) or ""
        if "step 00042 | the latest line" in text:
            seen.append(text)
            raise KeyboardInterrupt  # seen: stop the run, as Ctrl-C would

    with pytest.raises(KeyboardInterrupt):
        proc.supervise([sys.executable, "-c", code], tmp_path, dict(os.environ), log, 30, on_tick=tick, tick=0.1)
    assert seen, "the recent output never showed in run.log during the run"
    assert log.stat().st_size <= logcap.LOG_HEAD_BYTES + logcap.LOG_TAIL_BYTES + 200


@pytest.mark.parametrize("writes", [False, True], ids=["silent", "writing"])
def test_a_grandchild_that_left_the_group_holding_the_pipe_does_not_hold_the_run(tmp_path, writes):
    # the grandchild starts a session of its own (so the group's kill misses it) and keeps the
    # pipe open, silent or writing without end: supervise still returns at once
    pidfile, script = tmp_path / "grandchild.pid", tmp_path / "grandchild.py"
    script.write_text("import sys\nwhile True: sys.stdout.write('z' * 100 + '\\n')\n" if writes
                      else "import time\ntime.sleep(60)\n")
    code = (f"import subprocess, sys\nc = subprocess.Popen([sys.executable, {str(script)!r}], start_new_session=True)\n"
            f"open({str(pidfile)!r}, 'w').write(str(c.pid))\nprint('parent done', flush=True)")
    try:
        outcome, data, wall = _supervise(tmp_path, code)
        assert outcome.returncode == 0 and data.startswith(b"parent done\n")
        assert wall < logcap.LOG_DRAIN_SECONDS + 5
    finally:
        with_pid = pidfile.read_text() if pidfile.exists() else ""
        if with_pid:
            os.kill(int(with_pid), 9)


def test_a_background_child_in_the_group_does_not_hold_the_run(tmp_path):
    code = "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\nprint('bye')"
    outcome, data, wall = _supervise(tmp_path, code)
    assert outcome.returncode == 0 and data == b"bye\n" and wall < 5


def test_a_command_that_cannot_start_says_so_in_the_log(tmp_path):
    log = tmp_path / "run.log"
    outcome = proc.supervise([str(tmp_path / "no-such-program")], tmp_path, dict(os.environ), log, 10)
    assert outcome.returncode is None and outcome.error.startswith("cannot start")
    assert log.read_text().startswith("cannot start")


def test_a_started_command_waits_for_its_input_and_its_clock_starts_at_wait(tmp_path):
    """proc.start: the process gets ready before its input exists; `wait` supervises it from then."""
    script = "import sys, time\nprint('ready', flush=True)\nline = sys.stdin.readline().strip()\nprint('got', line)\n"
    started = proc.start([sys.executable, "-c", script], tmp_path, dict(os.environ), tmp_path / "log", stdin=True)
    time.sleep(1.0)  # it is ready and waiting meanwhile
    started.send(b"go\n")
    outcome = started.wait(10)
    assert outcome.returncode == 0 and outcome.seconds < 1.0  # the second of waiting is not its time
    assert (tmp_path / "log").read_text().split() == ["ready", "got", "go"]


def test_a_started_command_that_is_cancelled_is_killed_with_its_group(tmp_path):
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(child.pid, flush=True)\nsys.stdin.readline()\ntime.sleep(60)\n")
    started = proc.start([sys.executable, "-c", script], tmp_path, dict(os.environ), tmp_path / "log", stdin=True)
    deadline = time.monotonic() + 10
    while not (tmp_path / "log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int((tmp_path / "log").read_text().split()[0])
    started.cancel()
    started.cancel()  # twice is harmless
    assert started.proc.poll() is not None and _gone(child)


def _gone(pid: int, within: float = 5.0) -> bool:
    """Whether `pid` ended (a zombie waiting for init counts as gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False
