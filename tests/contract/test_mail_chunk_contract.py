"""Bulk sends in chunk jobs, the same on every broker: each recipient is its own email, sent at most once.

A chunk job carries up to ``MAIL_CHUNK_SIZE`` emails; each keeps its own key, Message-ID and send
record, so a 5xx fails one email, a 4xx retries only the emails still pending, and a redelivered
chunk sends nothing already sent. The worker runs in-process against a real SMTP server on loopback.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

from eventbus.app import install_extra_actors
from eventbus.delivery import build_message
from eventbus.mail import get_send_record, mail_stats, send_bulk_email, send_email
from eventbus.mail.job import CHUNK_ACTOR, EMAIL_QUEUE
from eventbus.mail.message import message_id_for
from eventbus.middleware.limits import QueueLimits
from eventbus.queues import Rate
from eventbus.send_record import SendState
from eventbus.settings import Settings, set_settings
from tests.conftest import wait_for
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401

SENDER = "noreply@example.com"


def use_settings(
    bus: Any, smtp: SmtpServer, *, email_rate: Rate | None = None, email_cap: int | None = None, **changes: Any
) -> Settings:
    """Point the contract bus at ``smtp``, with the email queue limited only by ``email_rate`` and ``email_cap``."""
    queues = tuple(
        replace(q, concurrency=email_cap, rate_limit=email_rate) if q.name == EMAIL_QUEUE else q
        for q in bus.settings.queues
    )
    settings = replace(
        bus.settings, smtp_host=smtp.host, smtp_port=smtp.port, smtp_from=SENDER, queues=queues, **changes
    )
    bus.settings = settings
    set_settings(settings)
    for middleware in bus.broker.middleware:  # the limits middleware read its settings when the broker was made
        if isinstance(middleware, QueueLimits):
            middleware.settings = settings
    install_extra_actors(bus.broker)
    bus.broker.declare_queue(EMAIL_QUEUE)
    return settings


def received_by(smtp: SmtpServer) -> Counter[str]:
    return Counter(r for mail in smtp.received for r in mail.rcpt_tos)


def test_a_550_and_a_451_in_one_chunk_fail_one_retry_one_and_send_the_rest_once(contract_bus, smtp_server):
    # Given one chunk of five emails, where the server refuses one address for good and defers another once
    use_settings(contract_bus, smtp_server, mail_chunk_size=50)
    smtp_server.refuse("ghost@example.com", "550 5.1.1 No such user here")
    smtp_server.refuse("busy@example.com", "451 4.2.1 Mailbox busy, try later", times=1)
    people = ["ann@example.com", "ghost@example.com", "bob@example.com", "busy@example.com", "cy@example.com"]
    result = send_bulk_email(
        "welcome", people, {"name": "friend"}, per_recipient=lambda a: {"name": a.split("@")[0]}, idempotency_key="c1"
    )
    assert result.jobs == 1 and result.enqueued == 5
    # When a worker runs it (the 451 makes Dramatiq retry the chunk once, with backoff)
    contract_bus.start()
    wait_for(lambda: (get_send_record("c1:busy@example.com") or _Nothing).state is SendState.SENT, 30)
    smtp_server.settle(0.5)
    # Then every other recipient got exactly one email, with its own subject and its own Message-ID
    assert received_by(smtp_server) == Counter(a for a in people if a != "ghost@example.com")
    subjects = {m.rcpt_tos[0]: m.message["Subject"] for m in smtp_server.received}
    assert subjects["bob@example.com"] == "Welcome, bob!"
    ids = {m.rcpt_tos[0]: m.message["Message-ID"] for m in smtp_server.received}
    assert ids["ann@example.com"] == message_id_for("c1:ann@example.com", SENDER) != ids["cy@example.com"]
    # the 550 failed at once with its code and text, tried once; the 451 was tried twice
    ghost = get_send_record("c1:ghost@example.com")
    assert ghost is not None and ghost.state is SendState.FAILED and ghost.attempts == 1
    assert ghost.code == 550 and "No such user here" in ghost.text
    busy = get_send_record("c1:busy@example.com")
    assert busy is not None and busy.attempts == 2
    # and the retried chunk touched nothing but the deferred recipient
    assert Counter(smtp_server.rcpts) == Counter({**{a: 1 for a in people}, "busy@example.com": 2})
    stats = mail_stats()
    assert (stats.get("sent"), stats.get("failed"), stats.get("retried")) == (4, 1, 1)
    assert not stats.get("skipped") and not stats.get("uncertain")


def test_a_chunk_redelivered_after_its_emails_were_sent_sends_nothing_again(contract_bus, smtp_server):
    # Given a bulk send of 12 in chunks of 5, all sent
    use_settings(contract_bus, smtp_server, mail_chunk_size=5)
    people = [f"p{i}@example.com" for i in range(12)]
    result = send_bulk_email("welcome", people, {"name": "all"}, idempotency_key="c2")
    assert result.jobs == 3
    contract_bus.start()
    wait_for(lambda: mail_stats().get("sent") == 12, 30)
    smtp_server.settle(0.5)
    transactions = smtp_server.count("mail")
    # When a chunk job is delivered again (as after a crash between its sends and its ack)
    emails = [{"to": a, "key": f"c2:{a}", "message_id": message_id_for(f"c2:{a}", SENDER)} for a in people[:5]]
    kwargs = {"template": "welcome", "context": {"name": "all"}, "emails": emails}
    contract_bus.broker.enqueue(build_message(EMAIL_QUEUE, CHUNK_ACTOR, kwargs, {}, "redelivered-chunk"))
    # Then it skips all five: nothing more reaches the server, and the skips are counted
    wait_for(lambda: mail_stats().get("skipped") == 5, 30)
    smtp_server.settle(0.5)
    assert smtp_server.count("mail") == transactions == 12
    assert received_by(smtp_server) == Counter(people)
    assert mail_stats().get("sent") == 12


def test_a_bulk_send_of_2000_gives_2000_distinct_emails_none_twice(contract_bus, smtp_server):
    # Given 2,000 recipients, in chunks of 50
    use_settings(contract_bus, smtp_server, mail_chunk_size=50, smtp_pool_size=8)
    people = [f"fan{i:04d}@example.com" for i in range(2000)]
    result = send_bulk_email("welcome", people, {"name": "fan"}, idempotency_key="c3")
    assert result.jobs == 40 and result.enqueued == 2000
    # When a worker sends them
    contract_bus.start(threads=8)
    wait_for(lambda: len(smtp_server.received) >= 2000, 120)
    smtp_server.settle(0.5)
    # Then each recipient got one email, each with the Message-ID fixed when it was queued
    assert received_by(smtp_server) == Counter(people)
    ids = [m.message["Message-ID"] for m in smtp_server.received]
    assert len(set(ids)) == 2000
    assert set(ids) == {message_id_for(f"c3:{a}", SENDER) for a in people}
    # over the worker's pooled connections, one send record each
    assert smtp_server.count("connect") <= 1 + 8  # 1: aiosmtpd's own readiness probe
    assert mail_stats().get("sent") == 2000 and get_send_record("c3:fan1999@example.com") is not None


def test_a_chunk_keeps_the_email_queue_rate_in_emails_not_jobs(contract_bus, smtp_server):
    # Given an email queue limited to 20 emails a second, and one chunk of 16
    use_settings(contract_bus, smtp_server, email_rate=Rate(20, 1), mail_chunk_size=50)
    people = [f"r{i}@example.com" for i in range(16)]
    send_bulk_email("welcome", people, {"name": "r"})
    # When a worker sends it
    contract_bus.start()
    wait_for(lambda: len(smtp_server.received) >= 16, 30)
    # Then the 16 emails arrived 50 ms apart (not all at once in the chunk's one start slot)
    times = sorted(m.at for m in smtp_server.received)
    assert times[-1] - times[0] >= 15 * 0.05 * 0.9
    assert received_by(smtp_server) == Counter(people)


def test_a_chunk_stops_when_the_server_is_down_and_sends_everything_once_when_it_is_back(contract_bus, smtp_server):
    # Given a server that refuses every connection, and a chunk of 30 over 4 lanes (retries 1-2 s apart)
    use_settings(contract_bus, smtp_server, smtp_pool_size=4)
    smtp_server.schedule("connect", *["421 4.3.2 Service not available"] * 1000)
    people = [f"d{i}@example.com" for i in range(30)]
    send_bulk_email("welcome", people, {"name": "d"}, idempotency_key="c4", min_backoff_ms=1000, max_backoff_ms=2000)
    # When a worker runs the chunk
    contract_bus.start()
    wait_for(lambda: mail_stats().get("retried", 0) >= 4, 30)
    time.sleep(0.3)
    # Then the run stopped once its lanes found the server down: 4 emails tried, 26 never claimed
    assert mail_stats().get("retried") == 4
    untouched = [a for a in people if (get_send_record(f"c4:{a}") or _Nothing).attempts == 0]
    assert len(untouched) == 26
    # When the server is back, the chunk's retry sends every email once
    smtp_server.clear_schedule("connect")
    wait_for(lambda: mail_stats().get("sent") == 30, 30)
    smtp_server.settle(0.5)
    assert received_by(smtp_server) == Counter(people)


class _Nothing:
    state = None
    attempts = -1


def test_a_critical_email_overtakes_the_backlog_of_a_bulk_send(contract_bus, smtp_server):
    # Given a bulk send of 400 (LOW) going out over 2 lanes
    use_settings(contract_bus, smtp_server, smtp_pool_size=2)
    send_bulk_email("welcome", [f"b{i:03d}@example.com" for i in range(400)], {"name": "b"})
    contract_bus.start(threads=12)
    wait_for(lambda: len(smtp_server.received) >= 20, 30)
    # When a CRITICAL email is sent
    send_email("welcome", "vip@example.com", {"name": "VIP"}, priority="critical")
    queued_at = len(smtp_server.received)
    wait_for(lambda: "vip@example.com" in received_by(smtp_server), 30)
    # Then it goes out next, not after the hundreds of bulk emails already waiting for a lane
    position = [m.rcpt_tos[0] for m in smtp_server.received].index("vip@example.com")
    assert position - queued_at < 30
    wait_for(lambda: len(smtp_server.received) >= 401, 60)


def test_a_rate_limited_chunk_hands_its_slot_to_a_critical_email(contract_bus, smtp_server):
    # Given an email queue of one at a time, 20 a second, busy with a bulk chunk of 80 (4 s of sending)
    use_settings(contract_bus, smtp_server, email_rate=Rate(20, 1), email_cap=1)
    send_bulk_email("welcome", [f"s{i:02d}@example.com" for i in range(80)], {"name": "s"})
    contract_bus.start()
    wait_for(lambda: len(smtp_server.received) >= 5, 30)
    # When a CRITICAL email is sent
    send_email("welcome", "vip@example.com", {"name": "VIP"}, priority="critical")
    # Then it goes out when the chunk hands the slot on after a half-second slice, not after the chunk
    wait_for(lambda: "vip@example.com" in received_by(smtp_server), 30)
    position = [m.rcpt_tos[0] for m in smtp_server.received].index("vip@example.com")
    # The first hand-off after it is sent (11-12 here): a freed slot goes to the most urgent job waiting
    # (eventbus.middleware.limits); after all 80 without the slices, 22-72 when it raced the LOW chunks
    assert position < 35
    wait_for(lambda: len(smtp_server.received) >= 81, 30)
    assert len(received_by(smtp_server)) == 81
