"""Installed like any library: the sdist and wheel from ``python -m build``, in a fresh venv outside the checkout.

One scenario, as a new user meets it: the wheel installs only ``eventbus``; every built-in template
renders; ``eventbus demo`` runs; and an app with a ``templates/`` folder of its own sends its template
and the built-in ``welcome`` through one worker to a real SMTP server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import eventbus
from tests.conftest import ROOT, wait_for
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401

pytestmark = pytest.mark.slow

BUILT_IN = sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_dir())

APP = """
from eventbus import Event, declare_topic, subscribe
from eventbus.mail import send_email

declare_topic("invoice.paid")


@subscribe("invoice.paid")
def send_invoice(event: Event) -> None:
    send_email("invoice", event.payload["email"], {"number": event.payload["number"]})
"""

INVOICE = {
    "subject.txt": "Invoice {{ number }}",
    "body.txt": "Your invoice {{ number }} is paid.",
    "body.html": "<p>Your invoice {{ number }} is paid.</p>",
}


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) made by ``python -m build`` (which builds the wheel from the sdist)."""
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=dist)
    [sdist] = dist.glob("*.tar.gz")
    [wheel] = dist.glob("*.whl")
    return sdist, wheel


def test_build_makes_an_sdist_and_a_wheel_of_one_version_holding_only_the_eventbus_package(built):
    sdist, wheel = built
    assert eventbus.__version__ in sdist.name and eventbus.__version__ in wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"eventbus"}
    assert {f"eventbus/templates/{t}/subject.txt" for t in BUILT_IN} <= set(names)
    assert "eventbus/subscribers/users.py" in names
    with tarfile.open(sdist) as archive:
        assert any(n.endswith("/templates/welcome/body.html") for n in archive.getnames())


def test_the_wheel_works_on_its_own_in_a_fresh_venv(built, tmp_path, smtp_server: SmtpServer):
    # Given the wheel installed into a fresh venv, and a folder outside the checkout
    _, wheel = built
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    bin_ = venv / "bin"
    run(bin_ / "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=tmp_path, timeout=600)
    shown = run(bin_ / "pip", "show", "-f", "eventbus", cwd=tmp_path)
    files = shown.split("Files:", 1)[1].split()
    tops = {Path(f).parts[0] for f in files if not f.startswith("..")}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"eventbus"}, tops
    app = tmp_path / "app"
    app.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "REDIS_", "SMTP_", "PYTHON"))}
    env.update(PATH=f"{bin_}{os.pathsep}{env['PATH']}", PYTHONPATH=str(app))
    eventbus_cli = bin_ / "eventbus"

    # When a user asks for the version and renders every built-in template with its sample
    assert run(eventbus_cli, "--version", cwd=app, env=env).strip() == f"eventbus {eventbus.__version__}"
    assert run(eventbus_cli, "render", "--list", cwd=app, env=env).split() == BUILT_IN
    for name in BUILT_IN:
        run(eventbus_cli, "render", name, "--out", app / "previews", cwd=app, env=env)
    assert sorted(p.stem for p in (app / "previews").glob("*.html")) == BUILT_IN

    # And runs the demo
    assert "emails delivered" in run(eventbus_cli, "demo", cwd=app, env=env, timeout=180)

    # And an app with a template of its own runs one worker against a real SMTP server
    (app / "myapp.py").write_text(APP)
    for part, text in INVOICE.items():
        (app / "templates" / "invoice").mkdir(parents=True, exist_ok=True)
        (app / "templates" / "invoice" / part).write_text(text)
    env.update(smtp_server.env, EVENTBUS_SUBSCRIBERS="myapp", EVENTBUS_TEMPLATES_DIR="templates")
    worker = subprocess.Popen(
        [eventbus_cli, "worker", "-p", "1", "-t", "2"], cwd=app, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        run(eventbus_cli, "publish", "user.registered", '{"email": "ada@example.com", "name": "Ada"}', cwd=app, env=env)
        run(eventbus_cli, "publish", "invoice.paid", '{"email": "ada@example.com", "number": "A-7"}', cwd=app, env=env)
        # Then both emails arrive: the app's own template and the built-in welcome
        wait_for(lambda: len(smtp_server.received) >= 2, 60)
        subjects = sorted(r.message["Subject"] for r in smtp_server.received)
        assert subjects[0] == "Invoice A-7"
        assert re.search(r"welcome", subjects[1], re.IGNORECASE), subjects
    finally:
        started = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)
        try:
            code = worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
    assert code == 0
    assert time.monotonic() - started < 5
