"""Email end to end: real worker processes on real Redis, a real SMTP server on loopback (issue 3)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import dramatiq
import pytest

from eventbus import publish_event
from eventbus.errors import HeaderInjection, PayloadInvalid, TemplateError
from eventbus.mail import get_send_record, send_email
from eventbus.send_record import SendState
from tests.conftest import wait_for
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def settings(settings, smtp_server):
    """The test's Redis settings, sending to the loopback SMTP server."""
    return replace(
        settings,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_from="Eventbus <noreply@example.com>",
    )


def mail_worker(start_worker, smtp_server, **env: str) -> Any:
    return start_worker(extra_env={**smtp_server.env, "EVENTBUS_DEFAULT_SUBSCRIBERS": "1", **env})


def test_vote_created_sends_one_multipart_confirmation_to_the_voter(bus, start_worker, smtp_server):
    # Given a worker with the default subscribers and a real SMTP server
    worker = mail_worker(start_worker, smtp_server)
    # When a vote is published
    publish_event("vote.created", {"voter_email": "ada@example.com", "model_id": "m-42", "model_name": "Orca 7B"})
    # Then exactly one email reaches the voter
    wait_for(lambda: len(smtp_server.received) >= 1, 60, worker)
    smtp_server.settle()
    [mail] = smtp_server.received
    assert mail.rcpt_tos == ["ada@example.com"]
    assert mail.mail_from == "noreply@example.com"
    msg = mail.message
    assert msg["Subject"] == "Thanks for voting for Orca 7B"
    assert msg["From"] == "Eventbus <noreply@example.com>"
    assert msg["To"] == "ada@example.com"
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@example.com>")
    # multipart: a text part and an HTML part with inlined CSS and a link from APP_URL
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Orca 7B" in text and "http://localhost:8000/models/m-42" in text
    assert "<style" not in html and 'style="' in html and "Orca 7B" in html


def test_421_at_connect_then_451_at_data_then_accepted_arrives_once(bus, start_worker, smtp_server):
    # Given a server that first refuses the connection, then refuses DATA, then accepts
    smtp_server.schedule("connect", "421 4.3.2 Service not available, try later")
    smtp_server.schedule("data", "451 4.3.0 Local error in processing")
    worker = mail_worker(start_worker, smtp_server)
    # When one email is sent
    queued = send_email("welcome", "bob@example.com", {"name": "Bob"}, idempotency_key="welcome-bob")
    # Then it arrives exactly once, after two retried attempts
    wait_for(lambda: len(smtp_server.received) >= 1, 60, worker)
    smtp_server.settle()
    assert [m.rcpt_tos for m in smtp_server.received] == [["bob@example.com"]]
    assert smtp_server.count("connect") >= 2 and smtp_server.count("data") == 2
    assert smtp_server.received[0].message["Message-ID"] == queued.message_id
    record = get_send_record("welcome-bob")
    assert record is not None and record.state is SendState.SENT and record.attempts == 3


def test_550_at_rcpt_fails_at_once_with_code_and_text_visible(bus, start_worker, smtp_server, redis_client, namespace):
    # Given a server that refuses the recipient permanently
    smtp_server.refuse("ghost@example.com", "550 5.1.1 No such user here")
    worker = mail_worker(start_worker, smtp_server)
    # When an email is sent to it
    send_email("welcome", "ghost@example.com", {"name": "Ghost"}, idempotency_key="welcome-ghost")
    # Then there is one attempt, no retry, and the failure is recorded with code and text
    wait_for(lambda: redis_client.zcard(f"{namespace}:email.XQ") >= 1, 60, worker)
    smtp_server.settle()
    assert smtp_server.count("rcpt") == 1
    assert smtp_server.received == []
    record = get_send_record("welcome-ghost")
    assert record is not None and record.state is SendState.FAILED
    assert record.code == 550 and "No such user here" in record.text and record.attempts == 1
    [raw] = redis_client.hvals(f"{namespace}:email.XQ.msgs")
    dead = dramatiq.Message.decode(raw)
    assert "SMTP 550" in dead.options["error"] and dead.options.get("retries", 0) == 0
    assert "Retrying" not in worker.output()


def test_partial_refusal_never_resends_to_accepted_recipients(bus, start_worker, smtp_server):
    # Given a server that accepts one recipient and defers the other once
    smtp_server.refuse("later@example.com", "450 4.2.1 Mailbox busy")
    worker = mail_worker(start_worker, smtp_server)
    # When one email goes to both
    send_email("welcome", ["now@example.com", "later@example.com"], {"name": "Team"}, idempotency_key="team")
    wait_for(lambda: len(smtp_server.received) >= 1, 60, worker)
    # and the busy mailbox recovers
    wait_for(lambda: (get_send_record("team") or object()).__dict__.get("attempts", 0) >= 2, 60, worker)
    smtp_server.allow("later@example.com")
    wait_for(lambda: len(smtp_server.received) >= 2, 60, worker)
    smtp_server.settle()
    # Then each recipient got it exactly once
    assert [m.rcpt_tos for m in smtp_server.received] == [["now@example.com"], ["later@example.com"]]
    ids = {m.message["Message-ID"] for m in smtp_server.received}
    assert len(ids) == 1  # the same email (same Message-ID) to both
    record = get_send_record("team")
    assert record is not None and record.state is SendState.SENT
    assert sorted(record.accepted) == ["later@example.com", "now@example.com"]


def test_sigkill_after_send_and_record_before_ack_never_sends_twice(
    bus, start_worker, smtp_server, redis_client, namespace
):
    # Given a worker that dies (SIGKILL) right after the server accepted and the record says sent
    worker = mail_worker(start_worker, smtp_server, EVENTBUS_TEST_KILL_AFTER_SEND="1")
    send_email("welcome", "carol@example.com", {"name": "Carol"}, idempotency_key="welcome-carol")
    wait_for(lambda: worker.proc.poll() is not None or len(smtp_server.received) >= 1, 60)
    wait_for(lambda: (get_send_record("welcome-carol") or object()).__dict__.get("state") == SendState.SENT, 30)
    worker.kill()
    # the job was never acked: its id is still in the dead worker's ack set
    ack_sets = [k.decode() for k in redis_client.scan_iter(f"{namespace}:__acks__.*.email")]
    unacked = [m for k in ack_sets for m in redis_client.smembers(k)]
    assert len(unacked) == 1
    # When the message is redelivered (this test does the janitor's job: dispatch.lua's maintenance
    # moves a dead worker's unacked ids back to the queue) and a new worker starts
    for key in ack_sets:
        for message_id in redis_client.smembers(key):
            redis_client.rpush(f"{namespace}:email", message_id)
        redis_client.delete(key)
    worker = mail_worker(start_worker, smtp_server)
    wait_for(lambda: redis_client.hlen(f"{namespace}:email.msgs") == 0, 30, worker)  # run and acked
    smtp_server.settle()
    # Then the server saw exactly one transaction for that email, and the skip was counted
    assert len(smtp_server.received) == 1
    assert smtp_server.count("mail") == 1
    assert int(redis_client.hget(f"{namespace}:mail:stats", "skipped")) == 1


def test_header_injection_is_rejected_and_the_server_receives_nothing(bus, start_worker, smtp_server):
    worker = mail_worker(start_worker, smtp_server)
    # CR/LF in a recipient
    with pytest.raises(HeaderInjection):
        send_email("welcome", "eve@example.com\r\nBcc: all@example.com", {"name": "Eve"})
    # CR/LF in a payload value that lands in the subject
    with pytest.raises(HeaderInjection):
        send_email("welcome", "eve@example.com", {"name": "Eve\r\nBcc: all@example.com"})
    # CR/LF in a subject rendered from a topic payload: rejected when the event is published
    with pytest.raises(PayloadInvalid):
        publish_event("vote.created", {"voter_email": "eve@example.com", "model_id": 1, "model_name": "X\nBcc: a@b.c"})
    with pytest.raises(PayloadInvalid):
        publish_event("vote.created", {"voter_email": "eve@example.com\nBcc: a@b.c", "model_id": 1, "model_name": "X"})
    # CR/LF in reply-to and custom headers
    with pytest.raises(HeaderInjection):
        send_email("welcome", "eve@example.com", {"name": "Eve"}, reply_to="x@example.com\nBcc: a@b.c")
    with pytest.raises(HeaderInjection):
        send_email("welcome", "eve@example.com", {"name": "Eve"}, headers={"X-Tag": "a\r\nBcc: a@b.c"})
    # a later, clean email proves the worker ran and nothing else reached the server
    send_email("welcome", "eve@example.com", {"name": "Eve"})
    wait_for(lambda: len(smtp_server.received) >= 1, 60, worker)
    smtp_server.settle()
    [mail] = smtp_server.received
    assert mail.rcpt_tos == ["eve@example.com"] and "Bcc" not in mail.data.decode()


def test_script_is_escaped_in_html_and_a_missing_variable_fails_clearly(bus, start_worker, smtp_server):
    worker = mail_worker(start_worker, smtp_server)
    # A missing variable fails at the call, naming the variable, and nothing is sent
    with pytest.raises(TemplateError, match="'model_name' is undefined"):
        send_email("vote_confirmation", "dan@example.com", {"model_id": 1})
    # A payload with <script> is escaped in the HTML part
    publish_event(
        "vote.created",
        {"voter_email": "dan@example.com", "model_id": 7, "model_name": "<script>alert('x')</script>"},
    )
    wait_for(lambda: len(smtp_server.received) >= 1, 60, worker)
    smtp_server.settle()
    [mail] = smtp_server.received
    html = mail.message.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_the_same_idempotency_key_twice_sends_once(bus, start_worker, smtp_server):
    worker = mail_worker(start_worker, smtp_server)
    first = send_email("welcome", "fay@example.com", {"name": "Fay"}, idempotency_key="k1")
    second = send_email("welcome", "fay@example.com", {"name": "Fay"}, idempotency_key="k1")
    assert first.enqueued and not second.enqueued and first.message_id == second.message_id
    wait_for(lambda: len(smtp_server.received) >= 1, 60, worker)
    time.sleep(0.5)
    third = send_email("welcome", "fay@example.com", {"name": "Fay"}, idempotency_key="k1")
    assert not third.enqueued
    smtp_server.settle()
    assert len(smtp_server.received) == 1
    assert json.loads(json.dumps(get_send_record("k1").__dict__, default=str))["state"] == "sent"
