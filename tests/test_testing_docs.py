"""docs/testing.md: its example test passes under pytest as a user would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "testing.md").read_text()


def test_the_testing_page_example_passes_under_pytest(tmp_path):
    # Given the page's example, alone in an empty folder with nothing configured
    code = re.search(r"```python\n# test_orders.py\n(.*?)```", PAGE, re.S)
    assert code, "docs/testing.md has no test_orders.py example"
    (tmp_path / "test_orders.py").write_text(code.group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "REDIS_"))}
    env["PYTHONPATH"] = str(ROOT)
    # When pytest runs it, as the page says
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_orders.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # Then both of its tests pass
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout, done.stdout[-3000:]
