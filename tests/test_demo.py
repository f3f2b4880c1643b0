"""``eventbus demo`` (what scripts/demo runs): the embedded broker, a worker, an SMTP sink; exits 0, leaves nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_publishes_the_scenario_delivers_every_email_and_leaves_no_process(tmp_path):
    # Given a directory with nothing in it and no broker configured
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "EVENTBUS_"))}
    env["PYTHONPATH"] = str(ROOT)
    # When the demo runs
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "eventbus", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    # Then it finishes, every expected email arrived and the failing subscriber left one dead letter
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    delivered = re.search(r"emails delivered\s+(\d+) of (\d+)", out)
    assert delivered and delivered.group(1) == delivered.group(2), out
    assert re.search(r"dead letters\s+1\b", out), out
    assert "demo.partner_api: ConnectionError" in out
    assert re.search(r"demo\.partner_api: ConnectionError.*\(failed, after \d+ attempts\)", out), out
    assert "eventbus serve" in out
    emails = list((tmp_path / ".eventbus" / "demo" / "mail").glob("*.eml"))
    assert len(emails) == int(delivered.group(1))
    assert (tmp_path / ".eventbus" / "demo" / "mail" / "preview.html").read_text().lstrip().startswith("<")
    assert elapsed < 120
    # and the worker it started is gone
    pid = int(re.search(r"worker pid (\d+)", out).group(1))
    assert not os.path.exists(f"/proc/{pid}")
