"""Building the MIME message: addresses and headers checked, a stable Message-ID, text + HTML parts."""

from __future__ import annotations

import base64
import functools
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import encoders, message_from_bytes
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import formataddr, formatdate, parseaddr

from eventbus.errors import InvalidAddress, MailError
from eventbus.mail.template import Rendered, check_header_value

_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_RESERVED = frozenset(
    {"from", "to", "cc", "bcc", "subject", "message-id", "date", "reply-to", "mime-version", "content-type"}
)
_MESSAGE_IDS = uuid.UUID("0b7e4a52-4c53-4a0e-9a61-5e1d8c3f2a77")


@dataclass(frozen=True)
class Attachment:
    """A file attached to an email; ``content`` travels base64-encoded in the job (JSON, never pickle)."""

    filename: str
    content: bytes
    content_type: str = "application/octet-stream"

    def to_json(self) -> dict[str, str]:
        """The form carried in the job message."""
        return {
            "filename": self.filename,
            "content_type": self.content_type,
            "content_b64": base64.b64encode(self.content).decode(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> Attachment:
        """Inverse of :meth:`to_json`."""
        return cls(data["filename"], base64.b64decode(data["content_b64"]), data["content_type"])


def check_address(value: object, *, field: str = "recipient") -> str:
    """Return ``value`` if it is a plain ``user@domain`` address; else InvalidAddress or HeaderInjection."""
    if not isinstance(value, str):
        raise InvalidAddress(f"{field} must be an email address string, got {type(value).__name__}")
    check_header_value(field, value)
    if len(value) > 254 or not _ADDRESS.match(value) or ".." in value:
        raise InvalidAddress(f"{field} {value!r} is not a valid email address; use the form user@example.com")
    return value


def check_sender(value: str) -> str:
    """SMTP_FROM may be ``Name <user@domain>`` (a one-label domain such as ``localhost`` is fine here)."""
    check_header_value("SMTP_FROM", value)
    _, address = parseaddr(value)
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        raise InvalidAddress(
            f"SMTP_FROM {value!r} has no user@domain address; set it to e.g. 'App <noreply@example.com>'"
        )
    return value


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Custom headers: token names, one-line values, and none that eventbus sets itself."""
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise MailError(f"header name {name!r} is not valid; use letters, digits and '-' (e.g. 'X-Campaign')")
        if name.lower() in _RESERVED:
            raise MailError(f"header {name!r} is set by eventbus; pass it as an argument (to=, reply_to=) instead")
        if not isinstance(value, str):
            raise MailError(f"header {name!r} must be a str, got {type(value).__name__}")
        check_header_value(f"header {name}", value)
        out[name] = value
    return out


def message_id_for(key: str, sender: str) -> str:
    """The Message-ID for an idempotency key: the same key always gives the same id."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "eventbus.local"
    return f"<{uuid.uuid5(_MESSAGE_IDS, key).hex}@{domain}>"


def build_email(
    rendered: Rendered,
    *,
    sender: str,
    to: Sequence[str],
    message_id: str,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Sequence[Attachment] = (),
) -> Message:
    """The whole message as an ``email.message.Message`` (previews and tests; the worker sends bytes)."""
    data = mime_headers(sender=sender, to=to, subject=rendered.subject, message_id=message_id, reply_to=reply_to,
                        headers=headers) + mime_body(rendered, tuple(attachments))  # fmt: skip
    return message_from_bytes(data)


def mime_headers(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    message_id: str,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """The top-level headers, CRLF-terminated; non-ASCII values are RFC 2047 encoded, long ones folded.

    Every value was checked for CR/LF/NUL before it got here.
    """
    lines = [
        _from_line(sender),
        f"To: {', '.join(to)}",
        f"Subject: {_encode('Subject', subject)}",
        _date_line(int(time.time())),
        f"Message-ID: {message_id}",
    ]
    if reply_to:
        lines.append(f"Reply-To: {reply_to}")
    for key, value in (headers or {}).items():
        lines.append(f"{key}: {_encode(key, value)}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


@functools.lru_cache(maxsize=16)
def _from_line(sender: str) -> str:
    name, address = parseaddr(sender)
    return f"From: {formataddr((name, address), charset='utf-8') if name else address}"


@functools.lru_cache(maxsize=2)
def _date_line(now_s: int) -> str:
    return f"Date: {formatdate(now_s, localtime=False)}"


@functools.lru_cache(maxsize=64)
def mime_body(rendered: Rendered, attachments: tuple[Attachment, ...] = ()) -> bytes:
    """The MIME body with its own headers: multipart/alternative (text + HTML), in multipart/mixed with attachments.

    Cached: a bulk send renders the same content for every recipient, so the body is built once.
    """
    body = MIMEMultipart("alternative")
    body.attach(MIMEText(rendered.text, "plain", _QP_UTF8))  # type: ignore[arg-type]
    body.attach(MIMEText(rendered.html, "html", _QP_UTF8))  # type: ignore[arg-type]
    msg: Message = body
    if attachments:
        msg = MIMEMultipart("mixed")
        msg.attach(body)
        for item in attachments:
            maintype, _, subtype = item.content_type.partition("/")
            part = MIMEBase(maintype, subtype or "octet-stream")
            part.set_payload(item.content)
            encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", item.filename))
            msg.attach(part)
    data = msg.as_bytes(policy=_CRLF)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _encode(name: str, value: str) -> str:
    if value.isascii() and len(name) + len(value) < 76:
        return value
    return Header(value, "us-ascii" if value.isascii() else "utf-8", header_name=name).encode(linesep="\r\n")


_QP_UTF8 = Charset("utf-8")
_QP_UTF8.body_encoding = QP
_QP_UTF8.header_encoding = QP
_CRLF = compat32.clone(linesep="\r\n")


def attachments_json(attachments: Sequence[Attachment | tuple[str, bytes, str]] | None) -> list[dict[str, str]]:
    """Check and encode attachments for the job; a tuple is (filename, content, content_type)."""
    out = []
    for item in attachments or ():
        if isinstance(item, tuple) and len(item) == 3:
            item = Attachment(*item)
        if not isinstance(item, Attachment) or not isinstance(item.content, bytes):
            raise MailError("attachments must be Attachment(filename, content: bytes, content_type) or such tuples")
        check_header_value("attachment filename", item.filename)
        if "/" not in item.content_type:
            raise MailError(f"attachment content_type {item.content_type!r} must look like 'application/pdf'")
        out.append(item.to_json())
    return out
