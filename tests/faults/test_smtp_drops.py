"""An SMTP server that drops connections: every email still arrives, none twice."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from eventbus.mail import send_bulk_email
from tests.conftest import wait_for
from tests.faults.table import report
from tests.smtp_server import Handler, SmtpServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class DroppingHandler(Handler):
    """Hangs up without a reply on every 4th DATA (the message is not accepted) and every 5th MAIL."""

    def __init__(self) -> None:
        super().__init__()
        self.datas = 0
        self.mails = 0
        self.drops = 0

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        self.mails += 1
        if self.mails % 5 == 0:
            return self._hang_up(server)
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.datas += 1
        if self.datas % 4 == 0:
            return self._hang_up(server)
        return await super().handle_DATA(server, session, envelope)

    def _hang_up(self, server: SMTP) -> str:
        self.drops += 1
        assert server.transport is not None
        server.transport.abort()  # no reply, no QUIT: the client sees a dropped connection
        return "421 4.4.2 connection dropped"


@pytest.fixture
def dropping_server() -> Any:
    server = SmtpServer()
    server.handler = DroppingHandler()
    server.controller.handler = server.handler
    server.controller.start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings, dropping_server):
    return replace(settings, smtp_host=dropping_server.host, smtp_port=dropping_server.port)


def test_an_smtp_server_that_drops_connections_loses_and_doubles_nothing(bus, start_worker, dropping_server):
    # Given a worker sending to a server that hangs up on every 4th DATA and every 5th MAIL
    env = {**dropping_server.env, "EMAIL_QUEUE_RATE_LIMIT": "off", "EMAIL_QUEUE_CONCURRENCY": "8"}
    worker = start_worker(extra_env=env)
    recipients = [f"reader{i}@example.com" for i in range(120)]
    # When 120 emails are sent
    send_bulk_email("welcome", recipients, {"name": "Reader"}, max_retries=8)
    started = time.monotonic()
    wait_for(lambda: len({r.rcpt_tos[0] for r in dropping_server.received}) >= len(recipients), 120, worker)
    recovered = time.monotonic() - started
    dropping_server.settle(1.0)
    # Then every recipient got exactly one email
    got = Counter(r.rcpt_tos[0] for r in dropping_server.received)
    lost = len(set(recipients) - set(got))
    duplicates = sum(n - 1 for n in got.values())
    handler = dropping_server.handler
    assert isinstance(handler, DroppingHandler) and handler.drops >= 20
    report(
        "SMTP server dropping connections (DATA and MAIL)",
        "redis",
        (len(recipients), lost, duplicates),
        recovery_s=recovered,
        note=f"{handler.drops} dropped connections; recovery: send -> last email received",
    )
