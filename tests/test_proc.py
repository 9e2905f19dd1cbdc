"""The process module: one rule for secrets, agent calls stopped with everything they started."""

from __future__ import annotations

import os
import sys
import time

import pytest

from autoresearch import proc


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
