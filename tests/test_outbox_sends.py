"""Emails and notifications go through the outbox too: a down broker does not fail them; each is relayed once, in order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dramatiq
import pytest

import tests.apps.channels  # noqa: F401  (registers the 'recording' channel)
from eventbus import PublishError, declare_topic, publish_event
from eventbus.brokers.sqlite.broker import SQLiteBroker
from eventbus.mail import send_bulk_email, send_email
from eventbus.mail.job import CHUNK_ACTOR, SEND_ACTOR
from eventbus.notifications import notify
from eventbus.notifications.job import NOTIFY_ACTOR
from eventbus.outbox import get_outbox, outbox_depth, outbox_status
from eventbus.settings import set_settings
from tests.test_outbox import back, down  # noqa: F401  (fixtures: a down Redis with the outbox on; a SQLite broker)

declare_topic("box.sent")
PROGRESS = {"model_id": "m", "model_name": "Orca", "milestone": 1, "vote_count": 1}


def arrived(broker: SQLiteBroker) -> list[dramatiq.Message]:
    rows = broker.store.execute("SELECT data FROM messages ORDER BY id")
    return [dramatiq.Message.decode(row[0]) for row in rows]


def test_sends_while_the_broker_is_down_wait_in_the_outbox_and_are_relayed_once_in_order(down, back):
    # Given a process whose broker is down, with the outbox on
    # When it sends an email, publishes an event, sends a bulk email and a notification
    queued = send_email("welcome", "ada@example.com", {"name": "Ada"}, idempotency_key="welcome-ada", priority="high")
    event = publish_event("box.sent", {"n": 1})
    recipients = [f"fan{i}@example.com" for i in range(120)]
    bulk = send_bulk_email("progress_update", recipients, PROGRESS, idempotency_key="campaign")
    note = notify("u1", "Hello", "World", channels=["inbox", "recording"])
    # Then every call returned normally and says where its jobs are
    assert queued.outboxed and not queued.enqueued and queued.key == "welcome-ada"
    assert (bulk.total, bulk.enqueued, bulk.outboxed, bulk.skipped, bulk.jobs) == (120, 0, 120, 0, 0)
    assert note.outboxed
    assert outbox_status()["queues"] == {"email": 1 + 3, "events": 1, "notifications": 2}  # 120 emails in chunks of 50
    box = get_outbox()
    assert box is not None
    # When the same rows are written again (a send that timed out on the client but reached the broker)
    columns = "queue, actor, once_key, eta_ms, created_at, error, data"
    rows = box.store.execute(f"SELECT {columns} FROM outbox ORDER BY id")
    with box.store.transaction() as conn:
        conn.executemany(f"INSERT INTO outbox ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    # And the relay runs once the broker is back
    assert box.drain(back, dedup_ttl_s=3600) == 2 * 7
    # Then each job arrived once, in the order of the calls, keeping its ids and priority
    got = arrived(back)
    assert [m.actor_name for m in got] == [
        SEND_ACTOR, "eventbus.fanout", CHUNK_ACTOR, CHUNK_ACTOR, CHUNK_ACTOR, NOTIFY_ACTOR, NOTIFY_ACTOR
    ]  # fmt: skip
    assert got[0].kwargs["key"] == "welcome-ada" and got[0].kwargs["message_id"] == queued.message_id
    assert got[1].message_id == event.id
    assert got[0].options["priority"] == "high" and got[2].options["priority"] == "low"  # bulk default: low
    assert [e["key"] for m in got[2:5] for e in m.kwargs["emails"]] == bulk.keys
    assert [m.kwargs["channel"] for m in got[5:]] == ["inbox", "recording"]
    assert {m.kwargs["notification"]["id"] for m in got[5:]} == {note.id}
    assert outbox_depth() == 0


def test_once_this_process_used_the_outbox_its_sends_queue_behind_it_until_drained(down, back, tmp_path: Path):
    # Given an email kept in the outbox while the broker was down
    send_email("welcome", "ada@example.com", {"name": "Ada"}, idempotency_key="first")
    # When the broker answers again but the outbox is not drained yet
    from eventbus.broker import set_broker

    set_settings(replace(down, broker_url=f"sqlite:///{tmp_path / 'bus.db'}"))
    set_broker(back)
    second = send_email("welcome", "bob@example.com", {"name": "Bob"}, idempotency_key="second")
    note = notify("u1", "Hi", "there", channels=["inbox"])
    # Then the later sends go behind the first instead of overtaking it
    assert second.outboxed and note.outboxed and arrived(back) == []
    get_outbox().drain(back, dedup_ttl_s=3600)  # type: ignore[union-attr]
    assert [m.kwargs.get("key") for m in arrived(back)] == ["first", "second", None]
    # ... and once drained, sends go straight to the broker again
    third = send_email("welcome", "cy@example.com", {"name": "Cy"}, idempotency_key="third")
    assert third.enqueued and not third.outboxed and outbox_depth() == 0


def test_without_the_outbox_a_down_broker_fails_sends_with_publish_error(down):
    # Given a down broker and no outbox
    set_settings(replace(down, outbox_path=""))
    # Then each send raises PublishError that names the way out
    with pytest.raises(PublishError, match="set EVENTBUS_OUTBOX"):
        send_email("welcome", "ada@example.com", {"name": "Ada"})
    with pytest.raises(PublishError, match="set EVENTBUS_OUTBOX"):
        send_bulk_email("welcome", ["a@example.com", "b@example.com"], {"name": "All"})
    with pytest.raises(PublishError, match="set EVENTBUS_OUTBOX"):
        notify("u1", "Hello", "World", channels=["inbox"])


@pytest.mark.parametrize("kind", ["send_email", "send_bulk_email", "notify"])
def test_each_send_reaches_the_outbox_through_its_broker_error(down, back, kind):
    # Given an empty outbox and a down broker
    # When one kind of send runs alone
    if kind == "send_email":
        assert send_email("welcome", "ada@example.com", {"name": "Ada"}).outboxed
    elif kind == "send_bulk_email":
        assert send_bulk_email("welcome", ["a@example.com", "b@example.com"], {"name": "All"}).outboxed == 2
    else:
        assert notify("u1", "Hello", "World", channels=["inbox"]).outboxed
    # Then its rows record the broker's error and the once-key the relay uses
    box = get_outbox()
    assert box is not None
    (error, once_key), *_ = box.store.execute("SELECT error, once_key FROM outbox")
    assert "could not enqueue" in error and "Connection refused" in error
    assert once_key.startswith({"send_email": "mail:", "send_bulk_email": "mail:chunk:", "notify": "notify:"}[kind])
    assert box.drain(back, dedup_ttl_s=3600) == 1 and len(arrived(back)) == 1
