"""The built wheel carries the built-in email templates inside the ``eventbus`` package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILT_IN = sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_dir())

CHECK = """
import sys
from pathlib import Path
from eventbus.mail.template import available_templates, templates_dir
assert Path(templates_dir()).is_relative_to(Path(sys.argv[1])), templates_dir()
print(" ".join(available_templates()))
"""


@pytest.mark.slow
def test_the_wheel_ships_every_built_in_template_and_finds_them_installed(tmp_path):
    # Given a wheel built from this checkout, installed into a folder outside it
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = wheels.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"eventbus/templates/{t}/subject.txt" for t in BUILT_IN} <= set(names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    # When a program run elsewhere lists the templates, Then it finds every built-in one in the installed package
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTBUS_")}
    env["PYTHONPATH"] = str(target)
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(target)], cwd=work, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == BUILT_IN
