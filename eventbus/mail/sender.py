"""SMTP connections reused across jobs in a worker process (aiosmtplib), and one mail transaction.

The pool lives on the worker's event loop (Dramatiq's AsyncIO middleware runs one loop per process),
is created lazily inside the first send, re-opens a connection after any failure, and is closed by
:class:`eventbus.mail.middleware.SmtpPoolCloser` when the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from eventbus.settings import Settings

_IDLE_CHECK_S = 20.0
_UNPOOLED_CONCURRENCY = 16  # without a pool: this many connections at once per worker process


@dataclass
class Outcome:
    """The result of one transaction: recipients accepted, recipients refused (code, text), the 250 reply.

    ``abandoned``: the handover said no (another attempt holds the email), so no data was sent.
    """

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    reply: str = ""
    abandoned: bool = False


class SmtpPool:
    """Connections for ``size`` lanes (:mod:`eventbus.mail.dispatch`), so at most ``size`` are open at once.

    ``pooled=False`` opens and closes one per email (the naive path); it too sends at most ``size``
    emails at once, so pooled and naive are compared like for like.
    """

    def __init__(self, settings: Settings, *, size: int | None = None, pooled: bool = True) -> None:
        self.settings = settings
        self.pooled = pooled and settings.smtp_pool_size > 0
        self.size = size or (settings.smtp_pool_size if self.pooled else _UNPOOLED_CONCURRENCY)
        self.opened = 0
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._hostname: str | None = None
        self._tls: ssl.SSLContext | None = None

    async def _open(self) -> aiosmtplib.SMTP:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout_s,
            use_tls=s.smtp_tls,
            start_tls=False if s.smtp_tls else s.smtp_starttls,
            username=s.smtp_user or None,
            password=s.smtp_pass or None,
            local_hostname=await self._local_hostname(),
            tls_context=await self._tls_context(),
        )
        await smtp.connect()
        self.opened += 1
        return smtp

    async def _tls_context(self) -> ssl.SSLContext | None:
        """One TLS context per pool: aiosmtplib would build one (loading the CA bundle, ~20 ms) per connection."""
        if not self.settings.smtp_tls and self.settings.smtp_starttls is False:
            return None
        if self._tls is None:
            self._tls = await asyncio.to_thread(_build_tls_context, self.settings.smtp_verify_certs)
        return self._tls

    async def _local_hostname(self) -> str:
        """The EHLO name, looked up once per pool (aiosmtplib would look it up in a thread per connection)."""
        if self._hostname is None:
            self._hostname = await asyncio.to_thread(socket.getfqdn)
        return self._hostname

    async def _take(self) -> aiosmtplib.SMTP:
        while self._idle:
            smtp, last_used = self._idle.pop()
            if not smtp.is_connected:
                continue
            if time.monotonic() - last_used > _IDLE_CHECK_S:
                try:  # the server may have dropped an idle connection; find out before a transaction
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError):
                    smtp.close()
                    continue
            return smtp
        return await self._open()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected client; back to the pool only if the block raised nothing.

        Without pooling the connection is closed with QUIT after the block, so the block is the
        place to write the send record: right after the server's reply, before the QUIT round trip.
        """
        smtp = await self._take()
        ok = False
        try:
            yield smtp
            ok = True
        finally:
            if ok and self.pooled and smtp.is_connected:
                self._idle.append((smtp, time.monotonic()))
            elif ok:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await smtp.quit()
            else:
                smtp.close()  # after a failure the connection may be mid-transaction: never reuse it

    async def close(self) -> None:
        """QUIT every idle connection."""
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
            smtp.close()


def _build_tls_context(verify: bool) -> ssl.SSLContext:
    """As aiosmtplib builds it: the system CA bundle, or no verification with SMTP_VERIFY_CERTS=0."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def transact(
    smtp: aiosmtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
    handover: Callable[[], Awaitable[bool]],
) -> Outcome:
    """MAIL, one RCPT per recipient, DATA, ``handover()``, the message; refused recipients are collected, not raised.

    Raises aiosmtplib errors for a refused sender, a refused DATA or a dropped connection.
    With every recipient refused, nothing is sent (RSET) and ``accepted`` is empty.
    ``handover`` runs once the server is ready for the message (its 354 to DATA) and before the
    first byte of it: it records that the message may reach the server. When it returns False
    nothing is sent and the connection is closed (in the middle of DATA it cannot be reset).
    MAIL and RCPT go through ``execute_command`` with the addresses quoted here: they were
    checked as plain ``user@domain`` when the email was queued, so aiosmtplib's address parsing
    (a good part of its cost per email) has nothing to add.
    """
    if smtp.is_ehlo_or_helo_needed:
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not smtp.is_connected:
                raise
            await smtp.helo()
    response = await smtp.execute_command(b"MAIL", b"FROM:<" + sender.encode("ascii") + b">")
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
    outcome = Outcome()
    for rcpt in recipients:
        response = await smtp.execute_command(b"RCPT", b"TO:<" + rcpt.encode("ascii") + b">")
        if response.code in (250, 251):
            outcome.accepted.append(rcpt)
        else:
            outcome.refused[rcpt] = (response.code, response.message)
    if not outcome.accepted:
        await smtp.rset()
        return outcome
    response = await smtp.execute_command(b"DATA")
    if response.code != 354:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    if not await handover():
        smtp.close()
        outcome.abandoned = True
        return outcome
    response = await _message(smtp, data)
    outcome.reply = response.message
    return outcome


async def _message(smtp: aiosmtplib.SMTP, data: bytes) -> aiosmtplib.SMTPResponse:
    """The message after a 354, as ``SMTP.data`` sends it (line endings, dot-stuffing), and the server's reply."""
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        protocol.write(PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n")
        response = await protocol.read_response(timeout=smtp.timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        smtp.close()
        raise
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SmtpPool] = weakref.WeakKeyDictionary()


def get_pool(settings: Settings) -> SmtpPool:
    """The pool of the running event loop (one per worker process); SMTP_POOL_SIZE=0 means no reuse."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = SmtpPool(settings)
    return pool


async def close_pools() -> None:
    """Close the pool of the running loop (called on worker shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
