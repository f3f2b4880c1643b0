"""The import layers hold: a backend that imports a feature, or a cycle, fails the lint.

Each test copies the package to a temporary folder, adds one bad import there, and runs the same
checks ``scripts/lint`` runs (``lint-imports`` with the project's contracts, ``scripts/import_cycles.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "eventbus", tmp_path / "eventbus", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def lint_imports(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run(tmp_path, str(BIN / "lint-imports"), "--no-cache")


def test_the_layers_hold_on_the_tree_as_it_is(tmp_path):
    # Given the package as committed, When the layer contracts are checked, Then they are kept
    tree = copy_tree(tmp_path)
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout
    assert "2 kept, 0 broken" in result.stdout


def test_a_backend_that_imports_a_feature_fails_the_lint(tmp_path):
    # Given a module of the Redis backend that imports the mail feature
    tree = copy_tree(tmp_path)
    (tree / "eventbus/brokers/redis/bad.py").write_text("from eventbus.mail import render\n")
    # When the layer contracts are checked, Then the lint fails and names the import
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "eventbus.brokers.redis.bad -> eventbus.mail" in result.stdout


def test_the_control_plane_importing_a_face_fails_the_lint(tmp_path):
    # Given the control plane importing the CLI (a face above it)
    tree = copy_tree(tmp_path)
    (tree / "eventbus/control/bad.py").write_text("import eventbus.cli\n")
    result = lint_imports(tree)
    assert result.returncode == 1
    assert "eventbus.control is not allowed to import eventbus.cli" in result.stdout


def test_an_import_cycle_fails_the_lint(tmp_path):
    # Given no cycle today, When a neutral module imports one that imports it back
    tree = copy_tree(tmp_path)
    cycles = [sys.executable, str(ROOT / "scripts/import_cycles.py")]
    assert run(tree, *cycles).returncode == 0
    (tree / "eventbus/retention.py").write_text(
        (tree / "eventbus/retention.py").read_text() + "\nfrom eventbus import stores  # noqa\n"
    )
    (tree / "eventbus/stores.py").write_text(
        (tree / "eventbus/stores.py").read_text() + "\nfrom eventbus import retention  # noqa\n"
    )
    # Then the cycle check fails and names both modules
    result = run(tree, *cycles)
    assert result.returncode == 1
    assert "eventbus.retention -> eventbus.stores" in result.stdout
