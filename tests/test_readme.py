"""The README's quickstart works as written, and the README stays a front door."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_readme_is_a_front_door_of_at_most_200_lines_linking_the_manual():
    assert len(README.splitlines()) <= 200
    for page in re.findall(r"\]\((docs/[\w.]+\.md)\)", README):
        assert (ROOT / page).is_file(), page


@pytest.mark.slow
def test_the_quickstart_publishes_and_a_worker_runs_the_subscriber(tmp_path):
    # Given the quickstart's module, in an empty folder with nothing configured
    code = re.search(r"```python\n# app_events.py\n(.*?)```", README, re.S)
    assert code, "the README has no app_events.py quickstart"
    (tmp_path / "app_events.py").write_text(code.group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "REDIS_"))}
    env["PYTHONPATH"] = str(ROOT)
    # When it publishes, and a worker runs as the README says
    subprocess.run([sys.executable, "app_events.py"], cwd=tmp_path, env=env, check=True, timeout=60)
    command = re.search(r"^EVENTBUS_SUBSCRIBERS=app_events (.+?)\s+# run it", README, re.M)
    assert command, "the README does not say how to run the quickstart's worker"
    program, *args = command.group(1).split()
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / program), *args],
        cwd=tmp_path, env={**env, "EVENTBUS_SUBSCRIBERS": "app_events"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        seen = ""
        assert worker.stdout is not None
        while "thanks for order o-1" not in seen and time.monotonic() < deadline:
            line = worker.stdout.readline()
            if not line and worker.poll() is not None:
                break
            seen += line
        # Then the subscriber ran
        assert "thanks for order o-1" in seen, seen[-3000:]
    finally:
        os.killpg(worker.pid, signal.SIGINT)  # Ctrl-C stops it, as the README says
        worker.communicate(timeout=30)
