"""A real SMTP server on loopback (aiosmtpd) that records every transaction and can answer errors on a schedule.

``server.schedule("connect", "421 4.3.2 busy")`` makes the next connection get 421 instead of 220;
``"mail"``, ``"rcpt"`` and ``"data"`` work the same way (one scheduled reply per command, in order).
``server.refuse("bad@example.com", "550 5.1.1 no such user")`` refuses that recipient every time;
``server.refuse("busy@example.com", "451 4.2.1 try later", times=1)`` only the first time.
``server.rcpts`` lists every RCPT address in order, accepted or not.

Faults at each step of a transaction, for the fault tests:
``server.stall("rcpt", after=10)`` lets 10 RCPTs through, then holds the reply to the 11th, and to
every command after it on any connection, until ``server.release()`` (``server.stalled`` is set
while one is held). A held DATA is stored first: the server has the message, its reply is late.
``server.drop("mail", 2, 5)`` hangs up without a reply on the 2nd and 5th MAIL; the steps are
``connect`` (no greeting), ``ehlo``, ``starttls``, ``mail``, ``rcpt``, ``data`` (the DATA command),
``content`` (the message received, no reply: not accepted) and ``accepted`` (250 sent, then the
connection closes). ``SmtpServer(starttls=True)`` offers STARTTLS with a self-signed certificate.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
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
    seen: Counter[str] = field(default_factory=Counter)
    hang_ups: dict[str, set[int]] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    dropped: Counter[str] = field(default_factory=Counter)
    live: set[asyncio.BaseTransport] = field(default_factory=set)  # server side of live connections

    def next_reply(self, step: str) -> str | None:
        with self.lock:
            self.commands.append(step)
            queue = self.scheduled.get(step)
            return queue.pop(0) if queue else None

    def count(self, step: str) -> tuple[bool, bool]:
        """Count one ``step``: (drop it, hold it)."""
        with self.lock:
            self.seen[step] += 1
            n = self.seen[step]
            drop = n in self.hang_ups.get(step, ())
            if drop:
                self.dropped[step] += 1
            after = self.stall_after.get(step)
            if after is not None and n > after:
                del self.stall_after[step]
                self.stalled.set()
            return drop, self.stalled.is_set() and not self.released.is_set()

    async def hold(self) -> None:
        while not self.released.is_set():
            await asyncio.sleep(0.02)

    async def fault(self, server: SMTP, step: str) -> bool:
        """Apply the faults scheduled for ``step``: hang up (True), or hold the reply while stalled."""
        drop, hold = self.count(step)
        if drop:
            assert server.transport is not None
            server.transport.abort()  # no reply, no QUIT: the client sees a dropped connection
            return True
        if hold:
            await self.hold()
        return False

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        if await self.fault(server, "mail"):
            return "421 4.4.2 connection dropped"
        reply = self.next_reply("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        if await self.fault(server, "rcpt"):
            return "421 4.4.2 connection dropped"
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
        drop, hold = self.count("content")
        if drop:
            assert server.transport is not None
            server.transport.abort()
            return "421 4.4.2 connection dropped"
        reply = self.next_reply("data")
        if reply:
            return reply
        with self.lock:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(envelope.content)))  # type: ignore[arg-type]
        if hold:  # stored: only the reply is late
            await self.hold()
        accepted_drop, _ = self.count("accepted")
        if accepted_drop:
            transport = server.transport
            assert transport is not None
            asyncio.get_running_loop().call_later(0.05, transport.close)  # after the 250 went out
        return "250 2.0.0 queued"


class _ScheduledSMTP(SMTP):
    event_handler: Handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.event_handler.live.add(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.live.discard(self.transport)  # type: ignore[arg-type]
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        drop, _ = self.event_handler.count("connect")
        if drop:
            assert self.transport is not None
            self.transport.abort()
            return
        reply = self.event_handler.next_reply("connect")
        if reply:
            await self.push(reply)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self.event_handler.fault(self, "ehlo"):
            await super().smtp_EHLO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        if not await self.event_handler.fault(self, "starttls"):
            await super().smtp_STARTTLS(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if not await self.event_handler.fault(self, "data"):
            await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _ScheduledSMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """The server under test; ``host``/``port`` go into SMTP_HOST/SMTP_PORT of the worker."""

    def __init__(self, *, starttls: bool = False) -> None:
        self.handler = Handler()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.starttls = starttls
        extra: dict[str, Any] = {"tls_context": _self_signed()} if starttls else {}
        self.controller = _Controller(self.handler, hostname=self.host, port=self.port, ready_timeout=10, **extra)

    @property
    def env(self) -> dict[str, str]:
        env = {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port), "SMTP_FROM": "Eventbus <noreply@example.com>"}
        if self.starttls:
            env.update(SMTP_STARTTLS="1", SMTP_VERIFY_CERTS="0")
        return env

    def stall(self, step: str, *, after: int) -> None:
        """Let ``after`` commands ``step`` through, then hold every reply until :meth:`release`."""
        with self.handler.lock:
            self.handler.stall_after[step] = after

    @property
    def stalled(self) -> threading.Event:
        return self.handler.stalled

    def release(self) -> None:
        """Answer the held commands and every later one at once (the server is healthy again)."""
        self.handler.released.set()

    def stop(self) -> None:
        """Close every live connection (clients that vanished, idle pooled ones), then stop the server."""
        self.release()
        loop = self.controller.loop
        done = threading.Event()

        def close_all() -> None:
            for transport in list(self.handler.live):
                transport.abort()
            self.handler.live.clear()
            done.set()

        loop.call_soon_threadsafe(close_all)
        done.wait(5)
        time.sleep(0.05)  # let the aborted connections finish their callbacks
        self.controller.stop()

    def drop(self, step: str, *occurrences: int) -> None:
        """Hang up without a reply on these occurrences (1-based) of ``step``."""
        with self.handler.lock:
            self.handler.hang_ups.setdefault(step, set()).update(occurrences)

    def received_by(self) -> Counter[str]:
        """How many messages each recipient got."""
        return Counter(r for mail in self.received for r in mail.rcpt_tos)

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


def _self_signed() -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1 (made with openssl)."""
    folder = Path(tempfile.mkdtemp(prefix="smtp-tls-"))
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


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
    server.stop()
