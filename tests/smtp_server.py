"""A real SMTP server on loopback (aiosmtpd) that records every transaction and can answer errors on a schedule.

``server.schedule("connect", "421 4.3.2 busy")`` makes the next connection get 421 instead of 220;
``"mail"``, ``"rcpt"`` and ``"data"`` work the same way (one scheduled reply per command, in order).
``server.refuse("bad@example.com", "550 5.1.1 no such user")`` refuses that recipient every time;
``server.refuse("busy@example.com", "451 4.2.1 try later", times=1)`` only the first time.
``server.rcpts`` lists every RCPT address in order, accepted or not.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    """One accepted transaction."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Handler:
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    scheduled: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    refused_times: dict[str, list[str]] = field(default_factory=dict)
    rcpts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, step: str) -> str | None:
        with self.lock:
            self.commands.append(step)
            queue = self.scheduled.get(step)
            return queue.pop(0) if queue else None

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        reply = self.next_reply("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        reply = self.next_reply("rcpt") or self.refused.get(address)
        with self.lock:
            self.rcpts.append(address)
            queued = self.refused_times.get(address)
            if not reply and queued:
                reply = queued.pop(0)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self.next_reply("data")
        if reply:
            return reply
        with self.lock:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(envelope.content)))  # type: ignore[arg-type]
        return "250 2.0.0 queued"


class _ScheduledSMTP(SMTP):
    async def _handle_client(self) -> None:
        reply = self.event_handler.next_reply("connect")
        if reply:
            await self.push(reply)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _ScheduledSMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """The server under test; ``host``/``port`` go into SMTP_HOST/SMTP_PORT of the worker."""

    def __init__(self) -> None:
        self.handler = Handler()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.controller = _Controller(self.handler, hostname=self.host, port=self.port, ready_timeout=10)

    @property
    def env(self) -> dict[str, str]:
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port), "SMTP_FROM": "Eventbus <noreply@example.com>"}

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def count(self, step: str) -> int:
        with self.handler.lock:
            return self.handler.commands.count(step)

    def schedule(self, step: str, *replies: str) -> None:
        with self.handler.lock:
            self.handler.scheduled.setdefault(step, []).extend(replies)

    def clear_schedule(self, step: str) -> None:
        with self.handler.lock:
            self.handler.scheduled.pop(step, None)

    def refuse(self, address: str, reply: str, *, times: int | None = None) -> None:
        with self.handler.lock:
            if times is None:
                self.handler.refused[address] = reply
            else:
                self.handler.refused_times.setdefault(address, []).extend([reply] * times)

    @property
    def rcpts(self) -> list[str]:
        with self.handler.lock:
            return list(self.handler.rcpts)

    def allow(self, address: str) -> None:
        with self.handler.lock:
            self.handler.refused.pop(address, None)

    def settle(self, quiet_s: float = 1.5) -> None:
        """Wait until no command arrived for ``quiet_s`` (to prove nothing more comes)."""
        last = -1
        while True:
            with self.handler.lock:
                n = len(self.handler.commands)
            if n == last:
                return
            last = n
            time.sleep(quiet_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A recording SMTP server on loopback for this test."""
    server = SmtpServer()
    server.controller.start()
    yield server
    server.controller.stop()
