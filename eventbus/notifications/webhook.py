"""The webhook channel: each notification POSTed as JSON, signed with HMAC-SHA256.

Headers: ``X-Eventbus-Timestamp: <unix seconds>`` and ``X-Eventbus-Signature: sha256=<hex>``, the
HMAC of ``"<timestamp>.<body>"`` with the shared secret. Receivers check it with
:func:`verify_signature` (constant time, with a freshness window against replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request

from eventbus.errors import NotificationError
from eventbus.notification import Notification


def sign(body: bytes, timestamp: str, secret: str) -> str:
    """The ``X-Eventbus-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(body: bytes, timestamp: str, signature: str, secret: str, *, tolerance_s: int = 300) -> bool:
    """True if ``signature`` is ours for ``body`` and ``timestamp`` is within ``tolerance_s`` of now."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(body, timestamp, secret), signature)


class WebhookChannel:
    """POSTs notifications to ``url``; a non-2xx answer or a network error raises, so the job retries."""

    name = "webhook"

    def __init__(self, url: str, secret: str, *, timeout_s: float = 10.0, name: str = "webhook") -> None:
        if not url.startswith(("http://", "https://")):
            raise NotificationError(f"webhook URL {url!r} must start with http:// or https://")
        if not secret:
            raise NotificationError("a webhook channel needs a secret to sign with (NOTIFY_WEBHOOK_SECRET)")
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.name = name

    def send(self, notification: Notification) -> None:
        """POST the notification; receivers dedupe by ``X-Eventbus-Notification-Id`` (sends may repeat)."""
        import json

        body = json.dumps(notification.to_dict(), separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "eventbus-webhook/1",
                "X-Eventbus-Timestamp": timestamp,
                "X-Eventbus-Signature": sign(body, timestamp, self.secret),
                "X-Eventbus-Notification-Id": notification.id,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()  # the error carries the open response; the retry must not leak its socket
            raise NotificationError(f"webhook {self.url} answered {exc.code} {exc.reason}; will retry") from None
        except (urllib.error.URLError, OSError) as exc:
            raise NotificationError(f"webhook {self.url} unreachable ({exc}); will retry") from None
        if not 200 <= status < 300:
            raise NotificationError(f"webhook {self.url} answered {status}; will retry")
