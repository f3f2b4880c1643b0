"""The same send path on the in-memory TestBus (what users run in their own unit tests)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eventbus import publish_event
from eventbus.errors import InvalidAddress, MailError, TemplateNotFound
from eventbus.mail import get_send_record, mail_stats, send_bulk_email, send_email
from eventbus.notifications import inbox_list, inbox_unread_count, notify
from eventbus.queues import with_backoff
from eventbus.send_record import SendState
from eventbus.settings import get_settings
from eventbus.testing import TestBus
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401


@pytest.fixture
def testbus(smtp_server: SmtpServer):
    settings = replace(
        get_settings(),
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_from="noreply@example.com",
        min_backoff_ms=5,
        max_backoff_ms=50,
        queues=with_backoff(get_settings().queues, min_backoff_ms=5, max_backoff_ms=50),
        default_subscribers=False,
    )
    with TestBus(settings) as bus:
        yield bus


def test_send_email_on_the_testbus_reaches_the_smtp_server_once(testbus, smtp_server):
    queued = send_email(
        "password_reset", "ivy@example.com", {"reset_url": "https://x.example.com/r/1"}, idempotency_key="r1"
    )
    send_email("password_reset", "ivy@example.com", {"reset_url": "https://x.example.com/r/1"}, idempotency_key="r1")
    testbus.join()
    assert [m.rcpt_tos for m in smtp_server.received] == [["ivy@example.com"]]
    assert smtp_server.received[0].message["Message-ID"] == queued.message_id
    assert get_send_record("r1").state is SendState.SENT
    assert mail_stats()["sent"] == 1


def test_bad_input_is_rejected_at_the_call(testbus, smtp_server):
    with pytest.raises(TemplateNotFound, match="did you mean 'welcome'"):
        send_email("welcom", "a@example.com", {"name": "A"})
    with pytest.raises(InvalidAddress):
        send_email("welcome", "not-an-address", {"name": "A"})
    with pytest.raises(InvalidAddress):
        send_bulk_email("welcome", ["a@example.com", "b@"], {"name": "A"})
    with pytest.raises(MailError, match="set by eventbus"):
        send_email("welcome", "a@example.com", {"name": "A"}, headers={"Bcc": "x@example.com"})
    testbus.join()
    assert smtp_server.received == []


def test_notify_on_the_testbus_fills_the_inbox(testbus):
    notify("u1", "Hi", "there", channels=["inbox"])
    testbus.join()
    assert inbox_unread_count("u1") == 1 and inbox_list("u1")[0].title == "Hi"


def test_a_published_built_in_topic_needs_no_subscriber_import(testbus):
    event = publish_event("referral.joined", {"referrer_email": "r@example.com", "referred_name": "Sam"})
    testbus.join()
    assert event.topic == "referral.joined"


def test_a_job_that_finds_its_email_still_sending_does_not_resend_and_counts_it(testbus, smtp_server):
    # Given a send record left in "sending" (a worker died between handing the email to SMTP and the record write)
    from eventbus.mail.api import _job
    from eventbus.mail.record import record_store
    from eventbus.priority import Priority
    from eventbus.send_record import new_fields

    store = record_store(testbus.broker)
    store.create_pending([("k-crash", new_fields(["jo@example.com"], "welcome", "<x@example.com>"))])
    store.records["k-crash"]["state"] = "sending"
    retry = testbus.settings.queue_config("email").retry_options()
    message, _ = _job(
        "welcome", ["jo@example.com"], {"name": "Jo"}, "k-crash", Priority.NORMAL, {}, retry, testbus.settings
    )
    # When its job is redelivered
    testbus.broker.enqueue(message)
    testbus.join()
    # Then nothing is sent, the email is marked failed as uncertain, and the counter shows it
    assert smtp_server.received == []
    record = get_send_record("k-crash")
    assert record.state is SendState.FAILED and record.text.startswith("uncertain")
    assert mail_stats()["uncertain"] == 1
