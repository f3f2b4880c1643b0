"""Email send phases under faults, with real worker processes on real Redis and SQLite and a real SMTP server.

An email whose message data never reached the server is always sent, once; one the server
accepted is never sent again; one whose data went out with no reply recorded is uncertain:
listed, kept as a dead letter with reason ``uncertain``, and resent only when an operator says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from eventbus import send_email
from eventbus.control import ControlPlane
from eventbus.deadletter import DeadReason
from eventbus.mail import get_send_record, send_bulk_email
from eventbus.send_record import SendState
from tests.conftest import ROOT, wait_for
from tests.faults.conftest import Rig
from tests.faults.table import report
from tests.smtp_server import SmtpServer

pytestmark = [pytest.mark.slow]

SENDER = "noreply@example.com"
# No email-queue limits (they would only slow the test down); a killed Redis worker is found dead after 3 s.
MAIL_ENV = {
    "EMAIL_QUEUE_RATE_LIMIT": "off",
    "EMAIL_QUEUE_CONCURRENCY": "0",
    "SMTP_POOL_SIZE": "4",
    "EVENTBUS_HEARTBEAT_TIMEOUT_S": "3",
}


@pytest.fixture
def smtp_servers() -> Iterator[Callable[..., SmtpServer]]:
    """``smtp_servers(starttls=False)`` starts a server; each stops after the rig's workers (request this fixture
    before ``rig``), so no connection of theirs is left open on a stopped server."""
    started: list[SmtpServer] = []

    def start(*, starttls: bool = False) -> SmtpServer:
        server = SmtpServer(starttls=starttls)
        server.controller.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp(smtp_servers: Callable[..., SmtpServer]) -> SmtpServer:
    return smtp_servers()


def states(keys: list[str]) -> Counter[str]:
    """How many of ``keys`` are in each phase (``uncertain`` apart from ``failed``)."""
    out: Counter[str] = Counter()
    for key in keys:
        record = get_send_record(key)
        out["missing" if record is None else "uncertain" if record.uncertain else record.state.value] += 1
    return out


def eventbus_cli(bus: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m eventbus ARGS`` on the rig's broker, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "eventbus", *args],
        env=bus.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("step", ["mail", "rcpt"])
@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_worker_killed_while_the_server_stalls_on_the_envelope_gets_every_email_out_once(smtp, rig, kind, step):
    # Given a server that accepts 10 envelopes, then holds its reply to the 11th MAIL (or RCPT) and every later command
    bus = rig(kind, smtp_from=SENDER)
    smtp.stall(step, after=10)
    env = {**smtp.env, **MAIL_ENV}
    worker = bus.start_worker(**env)
    people = [f"p{i:02d}@example.com" for i in range(30)]
    keys = [f"stall:{a}" for a in people]
    # When a bulk send of 30 (one chunk) is stuck there and the worker is SIGKILLed
    assert send_bulk_email("welcome", people, {"name": "p"}, idempotency_key="stall", max_retries=8).jobs == 1
    assert smtp.stalled.wait(30), worker.output()[-3000:]
    time.sleep(0.3)  # the other lanes run into the stall too
    worker.kill()
    at_kill = states(keys)
    assert at_kill["connecting"] >= 1, at_kill  # the 11th, and maybe others, stopped before their data
    # ... and a new worker starts against the server, healthy again
    smtp.release()
    back_at = time.monotonic()
    worker = bus.start_worker(**env)
    wait_for(lambda: set(smtp.received_by()) == set(people), 60, worker)
    smtp.settle(1.0)
    # Then every recipient got the email exactly once; only an email whose data went out may be uncertain
    got = smtp.received_by()
    lost, duplicates = len(set(people) - set(got)), sum(n - 1 for n in got.values())
    after = states(keys)
    assert after["sent"] + after["uncertain"] == 30 and after["uncertain"] == at_kill["data_sent"], (at_kill, after)
    report(
        f"SIGKILL while SMTP stalls on {step.upper()} of the 11th email",
        kind,
        (len(people), lost, duplicates),
        recovery_s=max(m.at for m in smtp.received) - back_at,
        note=(
            f"at kill: {at_kill['sent']} sent, {at_kill['connecting']} before data (resent), "
            f"{at_kill['data_sent']} data sent; uncertain: {after['uncertain']}; recovery: new worker -> last email"
        ),
    )


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_an_email_killed_after_its_data_went_out_is_uncertain_listed_and_resent_only_knowingly(smtp, rig, kind):
    # Given a server that stores the message, then holds its reply to the end of the data
    bus = rig(kind, smtp_from=SENDER)
    smtp.stall("content", after=0)
    env = {**smtp.env, **MAIL_ENV}
    worker = bus.start_worker(**env)
    queued = send_email("welcome", "dora@example.com", {"name": "Dora"}, idempotency_key="dora")
    assert smtp.stalled.wait(30), worker.output()[-3000:]
    record = get_send_record("dora")
    assert record is not None and record.state is SendState.DATA_SENT
    # When the worker is SIGKILLed in that window, and a new one starts
    worker.kill()
    smtp.release()
    worker = bus.start_worker(**env)
    wait_for(lambda: (r := get_send_record("dora")) is not None and r.uncertain, 60, worker)
    # Then the email is not resent: the server has the one copy
    smtp.settle(1.0)
    assert smtp.received_by() == Counter({"dora@example.com": 1})
    # it is listed as uncertain, and exactly it
    listed = eventbus_cli(bus, "mail", "uncertain", "--json")
    assert listed.returncode == 0, listed.stderr
    [item] = json.loads(listed.stdout)["items"]
    assert (item["key"], item["to"], item["message_id"]) == ("dora", ["dora@example.com"], queued.message_id)
    # its dead letter in the email queue says why, and the stats count it
    cp = ControlPlane(bus.broker, bus.settings)
    [letter] = cp.dead_letters("email").items
    assert letter.reason is DeadReason.UNCERTAIN and letter.job_id == item["job_id"]
    stats = eventbus_cli(bus, "stats", "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["mail"]["uncertain"] == 1
    # When an operator names a key that is not uncertain, nothing happens: exit 2, one line
    for bad in ("nobody", "dora-typo"):
        refused = eventbus_cli(bus, "mail", "uncertain", "--resend", bad)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "no uncertain email with key" in refused.stderr
    report(
        "SIGKILL after the DATA bytes, before the reply is recorded",
        kind,
        (1, 0, sum(smtp.received_by().values()) - 1),
        note="1 uncertain: not resent, listed by `eventbus mail uncertain`, dead letter reason uncertain",
    )
    # When the operator resends it knowingly
    resent = eventbus_cli(bus, "mail", "uncertain", "--resend", "dora")
    assert resent.returncode == 0, resent.stderr
    # Then the server gets it a second time, with the same Message-ID, and the record says sent
    wait_for(lambda: smtp.received_by()["dora@example.com"] == 2, 60, worker)
    assert {m.message["Message-ID"] for m in smtp.received} == {queued.message_id}
    wait_for(lambda: (r := get_send_record("dora")) is not None and r.state is SendState.SENT, 30, worker)
    assert json.loads(eventbus_cli(bus, "mail", "uncertain", "--json").stdout)["items"] == []
    again = eventbus_cli(bus, "mail", "uncertain", "--resend", "dora")
    assert again.returncode == 2 and "is sent, not uncertain" in again.stderr


DROP_STEPS = ["connect", "ehlo", "starttls", "mail", "rcpt", "data", "content", "accepted"]
WHAT = {
    "connect": "before the greeting",
    "ehlo": "on EHLO",
    "starttls": "on STARTTLS",
    "mail": "on MAIL",
    "rcpt": "on RCPT",
    "data": "on DATA (before 354)",
    "content": "after the data, before the reply",
    "accepted": "right after its 250",
}


@pytest.mark.parametrize("step", DROP_STEPS)
@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_server_hanging_up_at_each_step_delivers_every_email_once(smtp_servers, rig, kind, step):
    # Given a server that hangs up at one step of the transaction, three times (STARTTLS offered where tested)
    server = smtp_servers(starttls=step == "starttls")
    bus = rig(kind, smtp_from=SENDER)
    server.drop(step, 2, 4, 7)
    worker = bus.start_worker(**server.env, **MAIL_ENV)
    people = [f"d{i:02d}@example.com" for i in range(16)]
    # When 16 emails are sent
    started = time.monotonic()
    send_bulk_email("welcome", people, {"name": "d"}, idempotency_key=f"drop-{step}", max_retries=10)
    wait_for(lambda: set(server.received_by()) == set(people), 60, worker)
    recovered = time.monotonic() - started
    server.settle(1.0)
    # Then each got it exactly once: not accepted -> sent again, accepted -> never again
    got = server.received_by()
    drops = server.handler.dropped[step]
    assert drops >= 1, f"the server never hung up {WHAT[step]}"
    assert states([f"drop-{step}:{a}" for a in people]) == Counter({"sent": len(people)})
    report(
        f"SMTP hangs up {WHAT[step]}",
        kind,
        (len(people), len(set(people) - set(got)), sum(n - 1 for n in got.values())),
        recovery_s=recovered,
        note=f"{drops} dropped connections; recovery: send -> last email received",
    )
