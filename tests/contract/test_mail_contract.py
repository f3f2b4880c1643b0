"""Send records and the in-app inbox, the same on every broker: at-most-once email, idempotent inbox."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from eventbus import send_email
from eventbus.app import install_extra_actors
from eventbus.delivery import build_message
from eventbus.mail.job import EMAIL_QUEUE, SEND_ACTOR
from eventbus.mail.record import get_send_record, mail_stats
from eventbus.notifications import Notification
from eventbus.notifications.inbox import InboxChannel, inbox_list, inbox_mark_read, inbox_unread_count
from eventbus.send_record import SendState
from eventbus.settings import set_settings
from tests.conftest import wait_for
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401


@pytest.fixture
def mail_bus(contract_bus, smtp_server: SmtpServer):
    """The contract bus with the send actor, pointed at the loopback SMTP server."""
    settings = replace(
        contract_bus.settings, smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_from="noreply@example.com"
    )
    contract_bus.settings = settings
    set_settings(settings)
    install_extra_actors(contract_bus.broker)
    contract_bus.broker.declare_queue(EMAIL_QUEUE)
    return contract_bus


def state_of(key: str) -> SendState | None:
    record = get_send_record(key)
    return record.state if record is not None else None


def test_an_email_goes_pending_then_sent_and_a_second_send_with_its_key_does_nothing(mail_bus, smtp_server):
    # Given an email queued while no worker runs
    queued = send_email("welcome", "carol@example.com", {"name": "Carol"}, idempotency_key="welcome-carol")
    # Then its record is pending, in the broker's store
    assert queued.enqueued and state_of("welcome-carol") is SendState.PENDING
    # When a worker runs it
    mail_bus.start()
    wait_for(lambda: state_of("welcome-carol") is SendState.SENT, 30)
    smtp_server.settle(0.5)
    # Then the server got it once, with the record's Message-ID, and the record shows the outcome
    [mail] = smtp_server.received
    record = get_send_record("welcome-carol")
    assert record is not None
    assert mail.message["Message-ID"] == queued.message_id == record.message_id
    assert record.attempts == 1 and record.accepted == ["carol@example.com"] and record.code == 250
    # When the same email is sent again with the same key
    again = send_email("welcome", "carol@example.com", {"name": "Carol"}, idempotency_key="welcome-carol")
    # Then nothing is queued and nothing more reaches the server
    assert not again.enqueued
    smtp_server.settle(0.5)
    assert len(smtp_server.received) == 1
    assert mail_stats().get("sent") == 1


def test_a_redelivered_send_job_whose_email_was_sent_does_nothing(mail_bus, smtp_server):
    # Given an email that was sent
    queued = send_email("welcome", "dan@example.com", {"name": "Dan"}, idempotency_key="welcome-dan")
    mail_bus.start()
    wait_for(lambda: state_of("welcome-dan") is SendState.SENT, 30)
    # When its job is delivered again (as after a crash between the send and the ack)
    kwargs = {
        "template": "welcome",
        "to": ["dan@example.com"],
        "context": {"name": "Dan"},
        "key": "welcome-dan",
        "message_id": queued.message_id,
    }
    mail_bus.broker.enqueue(build_message(EMAIL_QUEUE, SEND_ACTOR, kwargs, {}, "redelivered-dan"))
    # Then the job skips it: the server saw one transaction, and the skip is counted
    wait_for(lambda: mail_stats().get("skipped") == 1, 30)
    smtp_server.settle(0.5)
    assert len(smtp_server.received) == 1 and smtp_server.count("mail") == 1
    assert state_of("welcome-dan") is SendState.SENT


def test_the_inbox_lists_newest_first_stores_each_id_once_and_tracks_read_state(contract_bus):
    # Given three notifications for one user, one stored twice, and one for another user
    channel = InboxChannel()
    made = []
    for i in range(3):
        n = Notification(user_id="u1", title=f"t{i}", body=f"b{i}")
        made.append(n)
        channel.send(n)
        time.sleep(0.002)
    channel.send(made[1])
    channel.send(Notification(user_id="u2", title="other", body=""))
    # Then the user's inbox lists them newest first, once each, all unread
    assert [n.id for n in inbox_list("u1")] == [made[2].id, made[1].id, made[0].id]
    assert inbox_unread_count("u1") == 3 and inbox_unread_count("u2") == 1
    # When one is marked read, then all
    assert inbox_mark_read("u1", [made[0].id, "unknown"]) == 1
    assert [n.id for n in inbox_list("u1", unread_only=True)] == [made[2].id, made[1].id]
    assert [n.read for n in inbox_list("u1")] == [False, False, True]
    assert inbox_mark_read("u1") == 2
    # Then nothing of u1 is unread, and u2 is untouched
    assert inbox_unread_count("u1") == 0 and inbox_unread_count("u2") == 1
    assert inbox_list("u1", limit=2)[0].title == "t2"


def test_the_inbox_keeps_only_the_newest_items(contract_bus):
    set_settings(replace(contract_bus.settings, inbox_max_items=3))
    channel = InboxChannel()
    made = [Notification(user_id="u3", title=f"t{i}", body="", created_us=1_000 + i) for i in range(5)]
    for n in made:
        channel.send(n)
    assert [n.id for n in inbox_list("u3")] == [made[4].id, made[3].id, made[2].id]
    assert inbox_unread_count("u3") == 3
