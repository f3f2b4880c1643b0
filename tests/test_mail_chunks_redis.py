"""Bulk chunks with real worker processes on real Redis: a worker killed mid-chunk sends no email twice."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from eventbus.mail import get_send_record, mail_stats, send_bulk_email
from eventbus.send_record import SendState
from tests.conftest import wait_for
from tests.smtp_server import smtp_server  # noqa: F401

pytestmark = [pytest.mark.redis, pytest.mark.slow]

UNLIMITED = {"EMAIL_QUEUE_RATE_LIMIT": "off", "EMAIL_QUEUE_CONCURRENCY": "0", "SMTP_POOL_SIZE": "8"}


@pytest.fixture
def settings(settings, smtp_server):
    return replace(settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_from="noreply@example.com")


def states(keys: list[str]) -> dict[str, SendState | None]:
    return {k: (r.state if (r := get_send_record(k)) is not None else None) for k in keys}


def test_sigkill_in_the_middle_of_a_chunk_never_sends_an_email_twice(
    bus, start_worker, smtp_server, redis_client, namespace
):
    # Given a worker that dies (SIGKILL) right after the first email of a chunk of 40 is recorded as
    # sent, while its other lanes are handing emails to SMTP
    env = {**smtp_server.env, **UNLIMITED}
    worker = start_worker(extra_env={**env, "EVENTBUS_TEST_KILL_AFTER_SEND": "1"})
    people = [f"k{i:02d}@example.com" for i in range(40)]
    keys = [f"k1:{a}" for a in people]
    result = send_bulk_email("welcome", people, {"name": "k"}, idempotency_key="k1", priority="normal")
    assert result.jobs == 1
    wait_for(lambda: SendState.SENT in states(keys).values(), 60)
    wait_for(lambda: worker.proc.poll() is not None, 30)
    worker.kill()
    at_kill = states(keys)
    sent = {k for k, s in at_kill.items() if s is SendState.SENT}
    claimed = {k for k, s in at_kill.items() if s is SendState.CONNECTING}  # data not sent yet
    in_doubt = {k for k, s in at_kill.items() if s is SendState.DATA_SENT}  # data sent, no reply recorded
    assert len(sent) >= 1 and len(claimed) + len(in_doubt) <= 8  # at most one claimed email per lane
    # When the chunk is redelivered (this test does the janitor's job, as in test_mail_redis.py)
    ack_sets = [k.decode() for k in redis_client.scan_iter(f"{namespace}:__acks__.*.email")]
    for key in ack_sets:
        for message_id in redis_client.smembers(key):
            redis_client.rpush(f"{namespace}:email", message_id)
        redis_client.delete(key)
    worker = start_worker(extra_env=env)
    busy = {SendState.PENDING, SendState.CONNECTING, SendState.DATA_SENT}
    wait_for(lambda: not busy & set(states(keys).values()), 60, worker)
    smtp_server.settle()
    # Then nobody got the email twice
    got = Counter(r for mail in smtp_server.received for r in mail.rcpt_tos)
    assert max(got.values()) == 1
    # the emails whose data had gone out at the kill were not resent: uncertain (the server may have them);
    # those still in MAIL/RCPT were sent by the next worker, like the pending ones
    for key, state in states(keys).items():
        address = key.removeprefix("k1:")
        if key in in_doubt:
            record = get_send_record(key)
            assert record is not None and record.uncertain and got[address] <= 1
        else:
            assert state is SendState.SENT and got[address] == 1
    # and the counters tell the story: skipped the sent ones, counted the uncertain ones, sent the rest
    stats = mail_stats()
    assert stats.get("skipped", 0) == len(sent) and stats.get("uncertain", 0) == len(in_doubt)
    assert stats["sent"] == 40 - len(in_doubt)
