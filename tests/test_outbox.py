"""The publish outbox: a down broker does not fail ``publish_event``; the relay sends everything once, in order."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dramatiq
import pytest

from eventbus import PublishError, declare_topic, publish_event, publish_many
from eventbus.broker import make_broker, set_broker
from eventbus.brokers.sqlite.broker import SQLiteBroker
from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.delivery import EVENTS_QUEUE, FANOUT_ACTOR, build_message, install_actors
from eventbus.event import Event
from eventbus.outbox import COMPONENT, MIGRATIONS, Outbox, Relay, get_outbox, outbox_depth, outbox_status
from eventbus.settings import Settings, set_settings
from tests.conftest import ROOT

declare_topic("box.happened")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # bound, never listening: connection refused


@pytest.fixture
def down(tmp_path: Path):
    """This process publishing to a Redis that is down, with the outbox on."""
    settings = replace(
        Settings(),
        broker_url=f"redis://127.0.0.1:{closed_port()}/0",
        namespace="box",
        default_subscribers=False,
        publish_timeout_s=1.0,
        outbox_path=str(tmp_path / "outbox.db"),
    )
    set_settings(settings)
    set_broker(make_broker(settings))
    yield settings
    set_broker(None)
    set_settings(None)


@pytest.fixture
def back(tmp_path: Path):
    """The broker the relay sends to once it is 'back' (a SQLite file, to read what arrived in order)."""
    broker = SQLiteBroker(tmp_path / "bus.db")
    install_actors(broker)
    yield broker
    broker.close()


def arrived(broker: SQLiteBroker) -> list[dramatiq.Message]:
    rows = broker.store.execute("SELECT data FROM messages WHERE queue = 'events' ORDER BY id")
    return [dramatiq.Message.decode(row[0]) for row in rows]


def test_without_the_outbox_a_down_broker_raises_publish_error_within_the_timeout(down):
    set_settings(replace(down, outbox_path=""))
    started = time.monotonic()
    with pytest.raises(PublishError, match="set EVENTBUS_OUTBOX"):
        publish_event("box.happened", {"n": 1})
    assert time.monotonic() - started < down.publish_timeout_s + 1


def test_a_down_broker_sends_events_to_the_outbox_and_the_relay_delivers_them_once_in_order(down, back):
    # Given a publisher whose broker is down, with the outbox on
    # When it publishes (one by one, in a batch, and with a delay)
    first = publish_event("box.happened", {"n": 0})
    rest = publish_many([("box.happened", {"n": i}) for i in range(1, 5)])
    later = publish_event("box.happened", {"n": 5}, delay=timedelta(hours=1))
    # Then every publish returned normally and the events wait in the outbox
    assert outbox_depth() == 6
    status = outbox_status()
    assert status["enabled"] and status["depth"] == 6 and status["oldest_age_s"] >= 0
    # When the relay runs against the broker once it is back
    box = get_outbox()
    assert box is not None
    assert box.drain(back, dedup_ttl_s=3600) == 6
    # Then the immediate events arrived in publish order, with their original ids and published_at
    got = arrived(back)
    assert [m.message_id for m in got if "eta" not in m.options] == [first.id, *(e.id for e in rest)]
    assert got[0].kwargs["event"]["published_at"] == first.published_at.isoformat()
    # ... the delayed one keeps its due time (about an hour from now)
    delayed = [m for m in got if "eta" in m.options]
    assert [m.message_id for m in delayed] == [later.id]
    assert 3500_000 < delayed[0].options["eta"] - time.time() * 1000 <= 3600_000
    assert outbox_depth() == 0


def test_a_row_relayed_twice_is_enqueued_once(down, back):
    # Given events in the outbox, relayed once
    publish_many([("box.happened", {"n": i}) for i in range(3)])
    box = get_outbox()
    assert box is not None
    columns = "queue, actor, once_key, eta_ms, created_at, error, data"
    rows = box.store.execute(f"SELECT {columns} FROM outbox ORDER BY id")
    box.drain(back, dedup_ttl_s=3600)
    # When the same rows are relayed again (a relay crashed between the enqueue and the delete)
    with box.store.transaction() as conn:
        conn.executemany(f"INSERT INTO outbox ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    assert box.drain(back, dedup_ttl_s=3600) == 3
    # Then the broker holds each event once
    assert len(arrived(back)) == 3 and outbox_depth() == 0


def test_after_an_outage_this_process_queues_behind_its_outbox_events_until_drained(down, back, tmp_path):
    # Given an event kept in the outbox while the broker was down
    publish_event("box.happened", {"n": 0})
    # When the broker is reachable again but the outbox is not drained yet
    set_settings(replace(down, broker_url=f"sqlite:///{tmp_path / 'bus.db'}"))
    set_broker(back)
    second = publish_event("box.happened", {"n": 1})
    # Then the new event goes behind the old one instead of overtaking it
    assert outbox_depth() == 2 and arrived(back) == []
    get_outbox().drain(back, dedup_ttl_s=3600)  # type: ignore[union-attr]
    assert [m.kwargs["event"]["payload"]["n"] for m in arrived(back)] == [0, 1]
    # ... and once drained, publishes go straight to the broker again
    third = publish_event("box.happened", {"n": 2})
    assert outbox_depth() == 0 and [m.message_id for m in arrived(back)][-2:] == [second.id, third.id]


def test_one_relay_at_a_time_holds_the_lease(down, back):
    publish_many([("box.happened", {"n": i}) for i in range(3)])
    box = get_outbox()
    assert box is not None
    a = Relay(box, back, dedup_ttl_s=60)
    b = Relay(box, back, dedup_ttl_s=60)
    assert box.claim(a.owner) and not box.claim(b.owner)
    assert b.run_once() == 0 and outbox_depth() == 3
    a.stop()  # releases the lease
    assert b.run_once() == 3 and outbox_depth() == 0


def test_relay_thread_keeps_retrying_while_the_broker_is_down(down, back):
    # Given events in the outbox and a relay thread pointed at a broker that is still down
    publish_many([("box.happened", {"n": i}) for i in range(2)])
    box = get_outbox()
    assert box is not None
    from eventbus.broker import get_broker

    relay = Relay(box, get_broker(), dedup_ttl_s=60, interval_s=0.05)
    relay.start()
    try:
        time.sleep(0.5)
        assert outbox_depth() == 2
        # When the broker comes back
        relay.broker = back
        deadline = time.monotonic() + 10
        while outbox_depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        # Then the thread (still alive) relays everything
        assert outbox_depth() == 0 and len(arrived(back)) == 2 and relay.relayed == 2
    finally:
        relay.stop()


def eventbus_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "REDIS_"))}
    full.update(PYTHONPATH=str(ROOT), EVENTBUS_DEFAULT_SUBSCRIBERS="0", **env)
    return subprocess.run(
        [sys.executable, "-m", "eventbus", *args], capture_output=True, text=True, env=full, timeout=60
    )


def test_cli_status_and_relay_once(down, tmp_path):
    # Given two events kept in the outbox while the broker was down
    publish_many([("box.happened", {"n": i}) for i in range(2)])
    env = {"EVENTBUS_OUTBOX": down.outbox_path, "EVENTBUS_BROKER_URL": down.broker_url}
    status = eventbus_cli("outbox", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["depth"] == 2
    # When `eventbus outbox relay --once` runs while the broker is still down: exit 1, one line, nothing lost
    failed = eventbus_cli("outbox", "relay", "--once", env=env)
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert outbox_depth() == 2
    # When it runs against a broker that is up
    env["EVENTBUS_BROKER_URL"] = f"sqlite:///{tmp_path / 'bus.db'}"
    done = eventbus_cli("outbox", "relay", "--once", env=env)
    assert done.returncode == 0, done.stderr
    assert "relayed 2 message(s); 0 left" in done.stdout and outbox_depth() == 0
    # ... and without EVENTBUS_OUTBOX the command says what to set
    off = eventbus_cli("outbox", "relay", "--once", env={"EVENTBUS_BROKER_URL": "memory://"})
    assert off.returncode == 2 and "EVENTBUS_OUTBOX is not set" in off.stderr


def test_an_outbox_file_written_by_the_events_only_version_still_relays_its_rows(tmp_path, back):
    # Given an outbox file of the first version (rows were events: event_id, topic) holding one event
    path = tmp_path / "old-outbox.db"
    old = SQLiteStore(path)
    old.ensure_schema(COMPONENT, MIGRATIONS[:1])
    event = Event("box.happened", {"n": 1})
    message = build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": event.to_dict(), "priority": None}, {}, event.id)
    with old.transaction() as conn:
        conn.execute(
            "INSERT INTO outbox (event_id, topic, eta_ms, created_at, error, data) VALUES (?, ?, NULL, ?, ?, ?)",
            (event.id, event.topic, int(time.time() * 1000), "connection refused", message.encode()),
        )
    old.close()
    # When this version opens it (the rows are migrated) and a new message queues behind the old row
    box = Outbox(path)
    assert box.by_queue() == {"events": 1}
    later = build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": {"id": "later"}}, {}, "later")
    box.put([later], ["event:later"], delay_ms=None, error="connection refused")
    # Then the relay sends both, the old row first, with the once-key the old version used
    assert box.drain(back, dedup_ttl_s=3600) == 2
    assert [m.message_id for m in arrived(back)] == [event.id, "later"]
    box.put([message], [f"event:{event.id}"], delay_ms=None, error="relayed again")
    assert box.drain(back, dedup_ttl_s=3600) == 1 and len(arrived(back)) == 2
