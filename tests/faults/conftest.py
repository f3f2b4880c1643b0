"""The fault-injection rig: a private Redis per test, worker processes, a ledger of finished jobs, the table.

Never touches the shared Redis on 127.0.0.1:6379: every Redis scenario starts its own
``redis-server`` on a free loopback port (AOF persistence in the test's temp dir, so a restart
keeps the data) and kills, stops or restarts that one only, by PID.

Each scenario calls ``tests.faults.table.report`` once: it prints one line (scenario, broker,
jobs, lost, duplicates, recovery time), asserts nothing was lost and duplicates stay within the
scenario's bound, and the session ends with the whole table (``pytest_terminal_summary``).

Adding a scenario is one test function: build a :class:`Rig` with ``rig("redis" | "sqlite")``,
start workers with ``bus.start_worker()``, publish with ``bus.publish(n)``, inject the fault
(``bus.redis.kill()/start()/pause()/resume()``, ``worker.kill()/terminate()``),
``bus.wait_done(expected)``, then ``report(...)`` with ``bus.ledger.count(expected)``.

Still to add once their features are merged:
- An SMTP server that drops connections (mail branch): an aiosmtpd server on loopback that
  closes the connection before answering DATA for every n-th message; a ``fault.happened``
  subscriber calling ``send_email``; lost = events without a received message, duplicates =
  received twice outside the accepted-but-not-yet-recorded window (bound 0 otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from eventbus import publish_many
from eventbus.broker import make_broker, set_broker
from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.delivery import install_actors
from eventbus.queues import with_backoff
from eventbus.settings import Settings, set_settings
from tests.apps import fault_recording
from tests.conftest import ROOT, WorkerProcess, need, wait_for
from tests.faults.table import HEADER, ROWS
from tests.private_redis import RedisServer

APP = "tests.apps.fault_recording"
SUBSCRIBERS = ("fault_a", "fault_b")


# -- the table (kept in tests.faults.table, the one module both this conftest and the tests import) ---


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    terminalreporter.section("fault table (lost must be 0; recovery: from the end of the fault, as each note says)")
    terminalreporter.write_line(HEADER)
    for row in ROWS:
        terminalreporter.write_line(row.line())


# -- the ledger of finished jobs --------------------------------------------------------------


class Ledger:
    """Reads what the workers recorded (``tests.apps.fault_recording``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = SQLiteStore(path)
        self.store.ensure_schema("fault_calls", fault_recording.SCHEMA)

    def rows(self) -> list[tuple[str, str, float]]:
        return [tuple(r) for r in self.store.execute("SELECT subscription, event_id, ended_at FROM calls")]

    def done(self) -> int:
        return int(self.store.execute("SELECT COUNT(DISTINCT subscription || '|' || event_id) FROM calls")[0][0])

    def total(self) -> int:
        return int(self.store.execute("SELECT COUNT(*) FROM calls")[0][0])

    def count(self, expected: set[tuple[str, str]], maybe: set[tuple[str, str]] | None = None) -> tuple[int, int, int]:
        """(jobs, lost, duplicates) against the expected (subscription, event id) pairs.

        ``maybe``: pairs that may run once or not at all (a publish that raised after reaching the broker).
        Anything else that ran is counted as a duplicate.
        """
        seen = Counter((sub, event_id) for sub, event_id, _ in self.rows())
        lost = sum(1 for pair in expected if seen[pair] == 0)
        duplicates = sum(n - 1 for pair, n in seen.items() if n > 1)
        unexpected = sum(n for pair, n in seen.items() if pair not in expected and pair not in (maybe or ()))
        return len(expected), lost, duplicates + unexpected

    def first_after(self, t: float) -> float | None:
        """When the first job finished after wall-clock time ``t`` (None: none yet)."""
        value = self.store.execute("SELECT MIN(ended_at) FROM calls WHERE ended_at > ?", (t,))[0][0]
        return None if value is None else float(value)


# -- the rig --------------------------------------------------------------------------------


@dataclass
class Rig:
    """One broker (private Redis or a SQLite file), this process as publisher, worker processes, a ledger."""

    kind: str
    settings: Settings
    tmp: Path
    ledger: Ledger
    redis: RedisServer | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    broker: Any = None

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "REDIS_"))}
        env.update(
            EVENTBUS_BROKER_URL=self.settings.broker_url,
            EVENTBUS_NAMESPACE=self.settings.namespace,
            EVENTBUS_SUBSCRIBERS=APP,
            EVENTBUS_DEFAULT_SUBSCRIBERS="0",
            JOB_RETRY_DELAY=str(self.settings.min_backoff_ms),
            FAULTS_RECORD_DB=str(self.ledger.path),
            PYTHONPATH=str(ROOT),
            dramatiq_worker_timeout="100",
        )
        if self.settings.outbox_path:
            env["EVENTBUS_OUTBOX"] = self.settings.outbox_path
        env.update(extra)
        return env

    def start_worker(
        self, *, processes: int = 1, threads: int = 4, wait: bool = True, cli: str = "dramatiq", **extra_env: str
    ) -> WorkerProcess:
        """``dramatiq eventbus.workers`` (``cli="eventbus"``: ``eventbus worker``, as deployed) on this rig's
        broker; returns once every process loaded the app."""
        args = ["-p", str(processes), "-t", str(threads), "--worker-shutdown-timeout", "20000"]
        command = None
        if cli == "eventbus":  # its shutdown timeout comes from EVENTBUS_SHUTDOWN_TIMEOUT_S
            command = [sys.executable, "-m", "eventbus", "worker", "-p", str(processes), "-t", str(threads)]
        log = self.tmp / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(self.env(**extra_env), args, log, command=command)
        self.workers.append(worker)
        if wait:
            wait_for(lambda: worker.output().count("eventbus worker: broker") >= processes, 60, worker)
        return worker

    def publish(self, n: int, **payload: Any) -> set[tuple[str, str]]:
        """Publish ``n`` fault.happened events at once; returns the (subscription, event id) pairs expected."""
        events = publish_many([("fault.happened", {"n": i, **payload}) for i in range(n)])
        return expected_pairs(e.id for e in events)

    def wait_done(self, expected: set[tuple[str, str]], timeout_s: float = 90) -> None:
        """Wait until every expected job finished at least once (the ledger then has the counts)."""
        alive = next((w for w in reversed(self.workers) if w.proc.poll() is None), None)
        wait_for(lambda: self.ledger.count(expected)[1] == 0, timeout_s, alive)
        time.sleep(0.3)  # let a late duplicate (if any) land before counting


def held_message_ids(bus: Rig) -> set[str]:
    """Message ids fetched by some worker and neither acked nor handed back (Redis ack sets / live SQLite leases)."""
    if bus.kind == "redis":
        client = bus.broker.client
        held: set[str] = set()
        for key in client.scan_iter(bus.broker.key("__acks__.*")):
            queue = key.decode().split(".", 2)[-1]  # <ns>:__acks__.<broker id>.<queue>
            ids = list(client.smembers(key))
            if ids:
                for data in client.hmget(bus.broker.key(f"{queue}.msgs"), ids):
                    if data is not None:
                        held.add(json.loads(data)["message_id"])
        return held
    now = int(time.time() * 1000)
    rows = bus.broker.store.execute(
        "SELECT message_id FROM messages WHERE lease_owner IS NOT NULL AND visible_at > ?", (now,)
    )
    return {row[0] for row in rows}


def expected_pairs(event_ids: Any) -> set[tuple[str, str]]:
    return {(sub, event_id) for event_id in event_ids for sub in SUBSCRIBERS}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``rig(kind, outbox=False, persistent=True, data_dir=None)``: a fresh broker of ``kind`` and this
    process publishing to it. Its data (the SQLite file ``bus.db``, Redis' files) goes in ``data_dir``,
    by default the test's directory."""
    made: list[Rig] = []

    def make(
        kind: str, *, outbox: bool = False, persistent: bool = True, data_dir: Path | None = None, **overrides: Any
    ) -> Rig:
        server = None
        if kind == "redis":
            need("redis-server", shutil.which("redis-server") is not None)
            server = RedisServer((data_dir or tmp_path) / "redis", persistent=persistent)
            server.start()
            url = server.url
        else:
            url = f"sqlite:///{(data_dir or tmp_path) / 'bus.db'}?lease_s=2"
        settings = replace(
            Settings(),
            broker_url=url,
            namespace="faults",
            min_backoff_ms=100,
            max_backoff_ms=1_000,
            queues=with_backoff(Settings().queues, min_backoff_ms=100, max_backoff_ms=1_000),
            default_subscribers=False,
            publish_timeout_s=1.0,
            outbox_path=str(tmp_path / "outbox.db") if outbox else "",
            **overrides,
        )
        set_settings(settings)
        broker = make_broker(settings)
        set_broker(broker)
        install_actors(broker)
        made_rig = Rig(kind, settings, tmp_path, Ledger(tmp_path / "record.db"), server, broker=broker)
        made.append(made_rig)
        return made_rig

    yield make
    for made_rig in made:
        for worker in made_rig.workers:
            if made_rig.redis is not None:
                made_rig.redis.resume()
            worker.terminate(timeout_s=20)
        if made_rig.redis is not None:
            made_rig.redis.stop()
        closer = getattr(made_rig.broker, "close", None)
        if closer is not None:
            closer()
    set_broker(None)
    set_settings(None)
