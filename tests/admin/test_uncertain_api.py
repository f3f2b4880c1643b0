"""``GET /api/mail/uncertain`` and ``POST /api/mail/uncertain/{key}/resend`` on a real HTTP server and real Redis."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from eventbus import send_email
from eventbus.control import ControlPlane, JobState
from eventbus.mail.attempt import Email
from eventbus.mail.names import EMAIL_QUEUE
from eventbus.mail.record import record_store
from eventbus.mail.uncertain import uncertain_letter
from eventbus.send_record import UNCERTAIN, Claim, Finish, Handover, SendState

pytestmark = [pytest.mark.redis]


def leave_uncertain(bus, key: str, to: str) -> str:
    """What a worker leaves after finding ``key`` in data_sent: a dead letter and a failed-uncertain record."""
    queued = send_email("welcome", to, {"name": "x"}, idempotency_key=key)
    store = record_store(bus)

    async def settle() -> None:
        try:
            await store.apply([Claim(key, {}), Handover(key, 1)])
            await store.apply([Finish(key, SendState.FAILED, {"text": UNCERTAIN}, "uncertain", 1)])
        finally:
            await store.aclose()

    asyncio.run(settle())
    email = Email("welcome", [to], {"name": "x"}, key, queued.message_id)
    bus.stores.control.put_back_dead(EMAIL_QUEUE, [uncertain_letter(dataclasses.asdict(email), 1, 2).encode()])
    return queued.message_id


def test_uncertain_emails_are_listed_and_one_is_resent_on_request_only(server, bus, settings):
    # Given one uncertain email and one sent one
    message_id = leave_uncertain(bus, "hx-1", "hx@example.com")
    send_email("welcome", "ok@example.com", {"name": "ok"}, idempotency_key="hx-ok")
    asyncio.run(_finish_sent(bus, "hx-ok"))
    cp = ControlPlane(bus, settings)
    with server.client() as http, server.client(token=None) as anonymous:
        # Then without the token nothing is shown or done
        assert anonymous.get("/api/mail/uncertain").status_code == 401
        assert anonymous.post("/api/mail/uncertain/hx-1/resend").status_code == 401
        # With it, the uncertain email is listed
        listed = http.get("/api/mail/uncertain").json()
        assert [(i["key"], i["to"], i["message_id"]) for i in listed["items"]] == [
            ("hx-1", ["hx@example.com"], message_id)
        ]
        assert listed["next_cursor"] is None
        # Bad input changes nothing
        assert http.get("/api/mail/uncertain", params={"limit": 0}).status_code == 422
        assert http.get("/api/mail/uncertain", params={"cursor": "not-a-cursor"}).status_code == 400
        unknown = http.post("/api/mail/uncertain/nobody/resend")
        assert unknown.status_code == 404 and unknown.json()["error"] == "uncertain_email_not_found"
        sent = http.post("/api/mail/uncertain/hx-ok/resend")
        assert sent.status_code == 409 and sent.json()["error"] == "not_uncertain"
        assert "is sent, not uncertain" in sent.json()["detail"]
        # When the operator resends it
        done = http.post("/api/mail/uncertain/hx-1/resend")
        # Then its record is pending again and its job waits in the email queue; it is no longer listed
        assert done.status_code == 200 and done.json()["key"] == "hx-1" and done.json()["previous_state"] == "failed"
        record = record_store(bus).get("hx-1")
        assert record is not None and record.state is SendState.PENDING
        job = cp.get_job(done.json()["job_id"])
        assert job.state is JobState.WAITING and job.queue == EMAIL_QUEUE and job.requeues == 1
        assert http.get("/api/mail/uncertain").json()["items"] == []
        assert http.post("/api/mail/uncertain/hx-1/resend").status_code == 404


async def _finish_sent(bus, key: str) -> None:
    store = record_store(bus)
    try:
        await store.apply([Finish(key, SendState.SENT, {"code": "250"}, "sent")])
    finally:
        await store.aclose()
