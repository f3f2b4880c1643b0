"""Bulk sends and the default subscribers that fan out to many recipients (issue 3, acceptance 2)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from eventbus import publish_event
from eventbus.mail import get_send_record, send_bulk_email
from eventbus.send_record import SendState
from tests.conftest import wait_for
from tests.smtp_server import smtp_server  # noqa: F401

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def settings(settings, smtp_server):
    return replace(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_from="noreply@example.com")


def test_rank_changed_with_2000_supporters_sends_one_email_to_each(
    bus, start_worker, smtp_server, redis_client, namespace
):
    # Given a worker with the default subscribers
    worker = start_worker(threads=16, extra_env={**smtp_server.env, "EVENTBUS_DEFAULT_SUBSCRIBERS": "1"})
    supporters = [f"fan{i:04d}@example.com" for i in range(2000)]
    # When a model's rank changes
    event = publish_event(
        "model.rank_changed",
        {
            "model_id": "m-1",
            "model_name": "Orca",
            "new_rank": 3,
            "old_rank": 9,
            "vote_count": 1234,
            "supporter_emails": supporters,
        },
    )
    # Then every supporter gets exactly one rank update
    wait_for(lambda: len(smtp_server.received) >= 2000, 240, worker)
    smtp_server.settle()
    received = smtp_server.received
    per_rcpt = Counter(r for m in received for r in m.rcpt_tos)
    assert len(received) == 2000
    assert set(per_rcpt) == set(supporters) and set(per_rcpt.values()) == {1}
    assert {m.message["Subject"] for m in received} == {"Orca is now #3"}
    # one send record per recipient, keyed by event id + subscription + recipient + template
    key = f"{event.id}:subscribers.models.rank_update:fan0007@example.com:rank_update"
    record = get_send_record(key)
    assert record is not None and record.state is SendState.SENT
    # over a handful of reused connections (SMTP_POOL_SIZE defaults to 8 per worker process)
    assert smtp_server.count("connect") <= 1 + 8  # 1: aiosmtpd's own readiness probe
    # and the operator counters agree
    assert int(redis_client.hget(f"{namespace}:mail:stats", "sent")) == 2000


def test_bulk_send_of_10000_enqueues_in_batches_with_progress_and_one_record_each(bus, redis_client, namespace):
    # Given 10,000 recipients (no worker: we look at what was enqueued)
    recipients = [f"user{i:05d}@example.com" for i in range(10_000)]
    seen: list[tuple[int, int]] = []
    # When they are sent a bulk email with a per-recipient context
    result = send_bulk_email(
        "progress_update",
        recipients + recipients[:10],  # duplicates are sent once
        {"model_id": "m", "model_name": "Orca", "milestone": "1k votes"},
        per_recipient=lambda address: {"vote_count": len(address)},
        progress=lambda done, total: seen.append((done, total)),
        idempotency_key="campaign-1",
    )
    # Then there are 10,000 emails in 200 jobs of 50 on the LOW list, one pending record each,
    # and progress per batch of 500
    assert result.total == 10_000 and result.enqueued == 10_000 and result.jobs == 200
    assert redis_client.llen(f"{namespace}:email.p3") == 200
    assert seen[0] == (500, 10_000) and seen[-1] == (10_000, 10_000) and len(seen) == 20
    record = get_send_record("campaign-1:user00042@example.com")
    assert record is not None and record.state is SendState.PENDING
    # And sending the same campaign again enqueues nothing
    again = send_bulk_email(
        "progress_update",
        recipients,
        {"model_id": "m", "model_name": "Orca", "milestone": "1k", "vote_count": 1},
        idempotency_key="campaign-1",
    )
    assert again.enqueued == 0 and again.jobs == 0 and redis_client.llen(f"{namespace}:email.p3") == 200
