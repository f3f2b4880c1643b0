"""Templated email: render, send at most once through pooled SMTP connections, bulk sends."""

from eventbus.mail.api import BulkResult, QueuedEmail, send_bulk_email, send_email
from eventbus.mail.message import Attachment
from eventbus.mail.record import get_send_record, mail_stats
from eventbus.mail.template import Rendered, available_templates, render
from eventbus.send_record import SendRecord, SendState

__all__ = [
    "send_email",
    "send_bulk_email",
    "QueuedEmail",
    "BulkResult",
    "Attachment",
    "render",
    "Rendered",
    "available_templates",
    "SendRecord",
    "SendState",
    "get_send_record",
    "mail_stats",
]
