"""Redis stopped while this process sends emails and notifications: the outbox keeps them, a worker delivers each once.

A private ``redis-server`` is stopped (SIGTERM) before the sends and started again after them; a
real worker process (its relay thread drains the outbox) sends through a real SMTP server on
loopback, which counts what each recipient got.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

import tests.apps.channels  # noqa: F401  (registers the 'recording' channel in this process too)
from eventbus.mail import get_send_record, send_bulk_email, send_email
from eventbus.notifications import inbox_list, notify
from eventbus.outbox import outbox_depth
from eventbus.send_record import SendState
from tests.conftest import wait_for
from tests.faults.conftest import APP
from tests.faults.table import report
from tests.smtp_server import smtp_server  # noqa: F401

pytestmark = [pytest.mark.slow]

UNLIMITED = {"EMAIL_QUEUE_RATE_LIMIT": "off", "EMAIL_QUEUE_CONCURRENCY": "0"}  # the 10/s default would take 100 s
PROGRESS = {"model_id": "m-1", "model_name": "Orca", "milestone": "1k votes", "vote_count": 1000}


def per_recipient(server) -> Counter[str]:
    return Counter(r for m in server.received for r in m.rcpt_tos)


def test_a_bulk_send_of_1000_while_redis_is_stopped_is_delivered_once_each_after_it_is_back(rig, smtp_server):
    # Given a publisher with the outbox on, and its Redis stopped
    bus = rig("redis", outbox=True, smtp_host=smtp_server.host, smtp_port=smtp_server.port,
              smtp_from="noreply@example.com")  # fmt: skip
    assert bus.redis is not None
    bus.redis.stop()
    recipients = [f"fan{i:04d}@example.com" for i in range(1000)]
    # When it sends a bulk email to 1,000 recipients
    started = time.monotonic()
    result = send_bulk_email("progress_update", recipients, PROGRESS, idempotency_key="campaign-down")
    took_s = time.monotonic() - started
    # Then the call returns quickly (one broker error, then the outbox) and says where the emails are
    assert (result.total, result.enqueued, result.outboxed, result.jobs) == (1000, 0, 1000, 0)
    assert took_s < bus.settings.publish_timeout_s + 2, took_s
    assert outbox_depth() == 1000 // bus.settings.mail_chunk_size
    # When Redis is back and a worker starts (its relay thread drains the outbox)
    bus.redis.start()
    worker = bus.start_worker(threads=8, **smtp_server.env, **UNLIMITED)
    wait_for(lambda: len(smtp_server.received) >= 1000, 60, worker)
    smtp_server.settle()
    # Then every recipient got exactly one email, and each send record says sent
    counts = per_recipient(smtp_server)
    lost = sum(1 for r in recipients if counts[r] == 0)
    duplicates = sum(n - 1 for n in counts.values() if n > 1) + sum(1 for r in counts if r not in set(recipients))
    assert outbox_depth() == 0
    record = get_send_record("campaign-down:fan0042@example.com")
    assert record is not None and record.state is SendState.SENT and record.attempts == 1
    report("Redis stopped: send_bulk_email 1,000 + outbox", "redis", (1000, lost, duplicates),
           note=f"call returned in {took_s:.2f} s; relayed by the worker")  # fmt: skip


def test_an_email_and_a_notification_sent_while_redis_is_stopped_arrive_once(rig, smtp_server):
    # Given a publisher with the outbox on, and its Redis stopped
    bus = rig("redis", outbox=True, smtp_host=smtp_server.host, smtp_port=smtp_server.port,
              smtp_from="noreply@example.com")  # fmt: skip
    assert bus.redis is not None
    bus.redis.stop()
    # When it sends an email and a notification (inbox, plus a channel that records each delivery)
    queued = send_email("welcome", "ada@example.com", {"name": "Ada"}, idempotency_key="welcome-ada")
    note = notify("u1", "Back soon", "Your export is queued", channels=["inbox", "recording"])
    # Then both returned normally, kept in the outbox
    assert queued.outboxed and not queued.enqueued and note.outboxed
    assert outbox_depth() == 3
    # When Redis is back and a worker starts
    bus.redis.start()
    worker = bus.start_worker(threads=4, EVENTBUS_SUBSCRIBERS=f"{APP},tests.apps.channels", **smtp_server.env)
    recorded = bus.broker.key("test", "recording")
    wait_for(lambda: len(smtp_server.received) >= 1 and bus.broker.client.llen(recorded) >= 1, 30, worker)
    wait_for(lambda: [n.id for n in inbox_list("u1")] == [note.id], 30, worker)
    smtp_server.settle()
    time.sleep(1)  # a duplicate notification job, if any, would land by now
    # Then the email arrived once, with its Message-ID, and the notification was delivered once per channel
    assert per_recipient(smtp_server) == Counter({"ada@example.com": 1})
    assert smtp_server.received[0].message["Message-ID"] == queued.message_id
    assert [json.loads(x)["id"] for x in bus.broker.client.lrange(recorded, 0, -1)] == [note.id]
    assert outbox_depth() == 0
    record = get_send_record("welcome-ada")
    assert record is not None and record.state is SendState.SENT
