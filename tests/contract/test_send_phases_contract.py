"""Send phases, the same on every broker: what a claim finds decides whether an email is sent again.

pending -> connecting (the claim: connect, EHLO, MAIL, RCPT) -> data_sent (the handover, written
before the first byte of the message) -> sent | failed. An email found before ``data_sent`` is
sent: nothing reached the server. One found in ``data_sent`` is uncertain: not resent, counted,
and kept as a dead letter of the email queue (reason ``uncertain``) that an operator can resend.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from eventbus import send_email
from eventbus.control import ControlPlane
from eventbus.deadletter import DeadReason
from eventbus.errors import NotUncertain, UncertainEmailNotFound
from eventbus.mail import get_send_record, send_bulk_email
from eventbus.mail.job import EMAIL_QUEUE
from eventbus.mail.record import record_store
from eventbus.send_record import UNCERTAIN, Claim, Finish, Handover, Op, SendRecord, SendState, new_fields
from tests.conftest import wait_for
from tests.contract.test_mail_chunk_contract import received_by, use_settings
from tests.smtp_server import smtp_server  # noqa: F401


def run_ops(bus: Any, *ops: Op) -> list[SendRecord | None]:
    """Apply ``ops`` to the bus's send records in one batch, as a worker's lane does."""
    store = record_store(bus.broker)

    async def apply() -> list[SendRecord | None]:
        try:
            return await store.apply(list(ops))
        finally:
            await store.aclose()

    return asyncio.run(apply())


def record(key: str) -> SendRecord:
    found = get_send_record(key)
    assert found is not None, f"no send record {key!r}"
    return found


def test_a_claim_resends_before_data_and_leaves_data_sent_to_be_settled(contract_bus):
    # Given a pending email
    store = record_store(contract_bus.broker)
    store.create_pending([("p1", new_fields(["a@example.com"], "welcome", "<p1@example.com>"))])
    # When a worker claims it, it is connecting (attempt 1)
    [before] = run_ops(contract_bus, Claim("p1", {}))
    assert before is not None and before.state is SendState.PENDING
    assert (record("p1").state, record("p1").attempts) == (SendState.CONNECTING, 1)
    # When another attempt finds it connecting (the first stopped during MAIL or RCPT), it takes it over
    [before] = run_ops(contract_bus, Claim("p1", {}))
    assert before is not None and (before.state, before.attempts) == (SendState.CONNECTING, 1)
    assert (record("p1").state, record("p1").attempts) == (SendState.CONNECTING, 2)
    # Then the first attempt can no longer hand the data over, nor write an outcome; the second can
    [first] = run_ops(contract_bus, Handover("p1", 1))
    assert first is not None and first.attempts == 2 and record("p1").state is SendState.CONNECTING
    run_ops(contract_bus, Finish("p1", SendState.PENDING, {"code": "451"}, "retried", 1))
    assert record("p1").state is SendState.CONNECTING
    [second] = run_ops(contract_bus, Handover("p1", 2))
    assert second is not None and second.state is SendState.CONNECTING and second.attempts == 2
    assert record("p1").state is SendState.DATA_SENT
    # When a claim finds it data_sent, nothing changes and nothing is counted (the attempt settles it)
    [before] = run_ops(contract_bus, Claim("p1", {}))
    assert before is not None and before.state is SendState.DATA_SENT
    assert (record("p1").state, record("p1").attempts) == (SendState.DATA_SENT, 2)
    assert store.stats().get("skipped", 0) == 0
    # When the holder records the 250, the email is sent; a later claim skips it and counts the skip
    run_ops(contract_bus, Finish("p1", SendState.SENT, {"code": "250"}, "sent", 2))
    [before] = run_ops(contract_bus, Claim("p1", {}))
    assert before is not None and before.state is SendState.SENT and record("p1").state is SendState.SENT
    assert store.stats() == {"sent": 1, "skipped": 1}  # the fenced-out 451 of attempt 1 counted nothing


def test_a_claim_creates_a_missing_record_and_handover_needs_the_claim(contract_bus):
    # Given no record (expired), a claim creates it connecting; a handover of a missing record does nothing
    [before] = run_ops(contract_bus, Claim("m1", {"to": json.dumps(["m@example.com"]), "template": "welcome"}))
    assert before is None and (record("m1").state, record("m1").attempts) == (SendState.CONNECTING, 1)
    assert run_ops(contract_bus, Handover("m2", 1)) == [None] and get_send_record("m2") is None
    # A handover, its outcome and the next email's claim ride in one batch, in order
    store = record_store(contract_bus.broker)
    store.create_pending([("m3", new_fields(["n@example.com"], "welcome", "<m3@example.com>"))])
    results = run_ops(
        contract_bus, Handover("m1", 1), Finish("m1", SendState.SENT, {"code": "250"}, "sent", 1), Claim("m3", {})
    )
    assert results[0] is not None and results[0].state is SendState.CONNECTING and results[1] is None
    assert record("m1").state is SendState.SENT and record("m3").state is SendState.CONNECTING


def test_reset_sets_an_uncertain_email_back_to_pending_keeping_what_was_accepted(contract_bus):
    store = record_store(contract_bus.broker)
    store.create_pending([("u1", new_fields(["a@example.com", "b@example.com"], "welcome", "<u1@example.com>"))])
    run_ops(contract_bus, Claim("u1", {}), Handover("u1", 1))
    run_ops(contract_bus, Finish("u1", SendState.FAILED, {"text": UNCERTAIN, "accepted": '["a@example.com"]'}, "x", 1))
    assert record("u1").uncertain
    before = store.reset("u1")
    assert before is not None and before.uncertain
    after = record("u1")
    assert after.state is SendState.PENDING and not after.uncertain and after.accepted == ["a@example.com"]
    assert store.reset("nobody") is None and get_send_record("nobody") is None


def test_a_chunk_sends_what_never_reached_the_server_and_keeps_the_data_sent_email_uncertain(contract_bus, smtp_server):
    # Given a bulk send of four whose records were left by a worker that stopped: one pending, one
    # connecting (stopped during RCPT), one data_sent (stopped waiting for the reply to its data), one sent
    use_settings(contract_bus, smtp_server, mail_chunk_size=50)
    people = ["pen@example.com", "con@example.com", "dat@example.com", "snt@example.com"]
    result = send_bulk_email("welcome", people, {"name": "x"}, idempotency_key="ph")
    assert result.jobs == 1
    run_ops(
        contract_bus, Claim("ph:con@example.com", {}), Claim("ph:dat@example.com", {}), Claim("ph:snt@example.com", {})
    )
    run_ops(contract_bus, Handover("ph:dat@example.com", 1), Handover("ph:snt@example.com", 1))
    run_ops(contract_bus, Finish("ph:snt@example.com", SendState.SENT, {"code": "250"}, "sent", 1))
    # When a worker runs the chunk
    contract_bus.start()
    wait_for(lambda: record("ph:con@example.com").state is SendState.SENT, 30)
    wait_for(lambda: record("ph:dat@example.com").state is SendState.FAILED, 30)
    smtp_server.settle(0.5)
    # Then the pending and the connecting one were sent once; the data_sent and the sent one not again
    assert received_by(smtp_server) == Counter({"pen@example.com": 1, "con@example.com": 1})
    assert record("ph:con@example.com").attempts == 2
    uncertain = record("ph:dat@example.com")
    assert uncertain.uncertain and uncertain.text == UNCERTAIN
    # and the uncertain one is counted and kept as a dead letter of the email queue, reason uncertain
    cp = ControlPlane(contract_bus.broker, contract_bus.settings)
    assert cp.stats().mail == {"sent": 3, "failed": 0, "retried": 0, "skipped": 1, "uncertain": 1}
    [letter] = [d for d in cp.dead_letters(EMAIL_QUEUE).items if d.reason is DeadReason.UNCERTAIN]
    assert letter.kwargs["key"] == "ph:dat@example.com" and letter.kwargs["to"] == ["dat@example.com"]
    assert letter.error is not None and letter.error.startswith("UncertainDelivery")
    assert [e.key for e in cp.uncertain_emails().items] == ["ph:dat@example.com"]


def test_an_operator_resends_an_uncertain_email_knowingly_and_only_an_uncertain_one(contract_bus, smtp_server):
    # Given an email left data_sent by a worker that stopped, settled as uncertain by the next attempt
    use_settings(contract_bus, smtp_server)
    queued = send_email("welcome", "una@example.com", {"name": "Una"}, idempotency_key="una")
    run_ops(contract_bus, Claim("una", {}), Handover("una", 1))
    contract_bus.start()
    wait_for(lambda: record("una").uncertain, 30)
    cp = ControlPlane(contract_bus.broker, contract_bus.settings)
    [listed] = cp.uncertain_emails().items
    assert (listed.key, listed.to, listed.message_id) == ("una", ["una@example.com"], queued.message_id)
    # When an operator asks for a key that is not uncertain, or unknown, nothing happens
    send_email("welcome", "ok@example.com", {"name": "Ok"}, idempotency_key="ok")
    wait_for(lambda: record("ok").state is SendState.SENT, 30)
    with pytest.raises(NotUncertain, match="'ok' is sent, not uncertain"):
        cp.resend_uncertain("ok")
    with pytest.raises(UncertainEmailNotFound, match="no uncertain email with key 'nobody'"):
        cp.resend_uncertain("nobody")
    assert [m.rcpt_tos for m in smtp_server.received] == [["ok@example.com"]]
    # When the operator resends the uncertain one
    done = cp.resend_uncertain("una")
    # Then it is sent (the operator's call: a duplicate if the first copy arrived), once, with its Message-ID
    assert done.previous_state == "failed"
    wait_for(lambda: record("una").state is SendState.SENT, 30)
    smtp_server.settle(0.5)
    [mail] = [m for m in smtp_server.received if m.rcpt_tos == ["una@example.com"]]
    assert mail.message["Message-ID"] == queued.message_id
    # and it is no longer listed; a second resend is refused
    assert cp.uncertain_emails().items == []
    with pytest.raises(NotUncertain):
        cp.resend_uncertain("una")
    assert received_by(smtp_server)["una@example.com"] == 1


def test_a_server_silent_after_the_data_leaves_the_email_uncertain_not_resent(contract_bus, smtp_server):
    # Given a server that stores the message, then does not answer the end of the data within SMTP_TIMEOUT_S
    use_settings(contract_bus, smtp_server, smtp_timeout_s=0.5)
    smtp_server.stall("content", after=0)
    send_email("welcome", "sil@example.com", {"name": "Sil"}, idempotency_key="sil")
    # When the worker gives up waiting
    contract_bus.start()
    wait_for(lambda: record("sil").uncertain, 30)
    smtp_server.release()
    smtp_server.settle(0.5)
    # Then the email is not sent again (the server may deliver the copy it has): uncertain, kept as a dead letter
    assert received_by(smtp_server) == Counter({"sil@example.com": 1})
    cp = ControlPlane(contract_bus.broker, contract_bus.settings)
    assert [e.key for e in cp.uncertain_emails().items] == ["sil"]
    assert cp.stats().mail["uncertain"] == 1 and cp.stats().mail["retried"] == 0
