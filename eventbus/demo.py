"""``eventbus demo``: the main scenario on the embedded SQLite broker, a real worker and a local SMTP sink.

Needs nothing but Python: it publishes votes, a rank change with 500 supporters, progress
milestones, a reward, registrations and referrals, shows live progress, then a summary, and
stops everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from eventbus.demo_run import Scenario, Sink, progress_line, summary

DEMO_DIR = Path(".eventbus") / "demo"
DEADLINE_S = 50.0


def run(keep: bool = False) -> None:
    """Run the demo in ``.eventbus/demo`` (wiped first unless ``keep``); exits when done or after 50 s."""
    from eventbus import topics  # noqa: F401  the built-in topics, declared in this publisher
    from eventbus.broker import make_broker, set_broker
    from eventbus.settings import Settings, set_settings

    started = time.monotonic()
    if DEMO_DIR.exists() and not keep:
        shutil.rmtree(DEMO_DIR)
    mail_dir = DEMO_DIR / "mail"
    mail_dir.mkdir(parents=True, exist_ok=True)
    db = (DEMO_DIR / "eventbus.db").resolve()
    settings = replace(Settings.from_env({}), broker_url=f"sqlite:///{db}")
    set_settings(settings)
    broker = make_broker(settings)
    set_broker(broker)

    sink = Sink(mail_dir, _free_port())
    sink.start()
    worker = _start_worker(settings.broker_url, sink.port, DEMO_DIR / "worker.log")
    click.echo(f"eventbus demo: broker sqlite:///{db}")
    click.echo(f"  worker pid {worker.pid} (2 processes x 8 threads), SMTP sink on 127.0.0.1:{sink.port}")
    tty = sys.stdout.isatty()
    try:
        scenario = Scenario()
        published = scenario.publish()
        click.echo(f"  published {published} events; expecting {scenario.expected_emails} emails\n")
        while time.monotonic() - started < DEADLINE_S:
            line, done = progress_line(broker, sink, scenario, time.monotonic() - started)
            # On a terminal the line updates in place; in a log it is one line per update.
            click.echo(f"\r  {line}" if tty else f"  {line}", nl=not tty)
            if done:
                break
            if worker.poll() is not None:
                raise click.ClickException(f"the worker exited ({worker.returncode}); see {DEMO_DIR / 'worker.log'}")
            time.sleep(0.5)
        click.echo("\n" if tty else "")
        summary(broker, sink, scenario, mail_dir, time.monotonic() - started)
    finally:
        _stop(worker)
        sink.stop()
        set_broker(None)
        set_settings(None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_worker(broker_url: str, smtp_port: int, log: Path) -> subprocess.Popen[Any]:
    env = dict(
        os.environ,
        EVENTBUS_BROKER_URL=broker_url,
        EVENTBUS_SUBSCRIBERS="eventbus.demo_app",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        SMTP_FROM="Vote Arena <hello@votearena.example>",
        APP_URL="https://votearena.example",
        # The source systems' 10 emails/s would make a 900-email demo take 90 s; the sink is local.
        EMAIL_QUEUE_RATE_LIMIT="off",
        EMAIL_QUEUE_CONCURRENCY="16",
        dramatiq_worker_timeout="100",
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "eventbus.workers", "-p", "2", "-t", "8"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(worker: subprocess.Popen[Any]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(5)
