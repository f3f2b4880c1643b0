"""Notifications end to end: inbox, signed webhook, user channels, user.registered (issue 3)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import tests.apps.channels  # noqa: F401  registers the "recording" channel in this (publisher) process
from eventbus import publish_event
from eventbus.errors import NotificationError
from eventbus.notifications import inbox_list, inbox_mark_read, inbox_unread_count, notify, verify_signature
from eventbus.notifications.channel import unregister_channel
from tests.conftest import wait_for
from tests.smtp_server import smtp_server  # noqa: F401

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SECRET = "s3cret"


class Hook:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0


@pytest.fixture
def webhook() -> Iterator[tuple[str, Hook]]:
    """A real HTTP server on loopback that records POSTs (and can answer 500 first)."""
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.requests.append(({k: v for k, v in self.headers.items()}, body))
            if hook.fail_next:
                hook.fail_next -= 1
                self.send_response(500)
            else:
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/eventbus", hook
    server.shutdown()
    server.server_close()
    unregister_channel("webhook")


@pytest.fixture
def settings(settings, webhook, smtp_server):
    url, _ = webhook
    return replace(
        settings,
        notify_webhook_url=url,
        notify_webhook_secret=SECRET,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    )


def worker_env(webhook, smtp_server) -> dict[str, str]:
    return {"NOTIFY_WEBHOOK_URL": webhook[0], "NOTIFY_WEBHOOK_SECRET": SECRET, **smtp_server.env}


def test_inbox_lists_newest_first_counts_unread_and_marks_read(bus, start_worker, webhook, smtp_server):
    worker = start_worker(extra_env=worker_env(webhook, smtp_server))
    # When three notifications go to user 7's inbox
    sent = [notify(7, f"title {i}", f"body {i}", kind="info", data={"n": i}, channels=["inbox"]) for i in range(3)]
    wait_for(lambda: inbox_unread_count("7") == 3, 30, worker)
    # Then the app lists them newest first, and marking read updates the count
    listed = inbox_list("7")
    assert [n.title for n in listed] == ["title 2", "title 1", "title 0"]
    assert listed[0].data == {"n": 2} and not listed[0].read
    assert inbox_mark_read("7", [sent[0].id]) == 1
    assert inbox_unread_count("7") == 2
    assert [n.title for n in inbox_list("7", unread_only=True)] == ["title 2", "title 1"]
    assert inbox_mark_read("7") == 2 and inbox_unread_count("7") == 0
    assert inbox_list("8") == []


def test_webhook_posts_signed_json_and_retries_a_failed_post(bus, start_worker, webhook, smtp_server):
    _, hook = webhook
    hook.fail_next = 1
    worker = start_worker(extra_env=worker_env(webhook, smtp_server))
    # When a notification goes to the webhook channel (its receiver answers 500 once)
    sent = notify("u1", "Hello", "World", kind="alert", data={"a": 1}, channels=["webhook"])
    wait_for(lambda: len(hook.requests) >= 2, 30, worker)
    # Then the retry carries the same JSON, signed with HMAC-SHA256 over "<timestamp>.<body>"
    headers, body = hook.requests[-1]
    assert json.loads(body) == {**sent.to_dict()}
    assert headers["X-Eventbus-Signature"].startswith("sha256=")
    assert verify_signature(body, headers["X-Eventbus-Timestamp"], headers["X-Eventbus-Signature"], SECRET)
    assert not verify_signature(body + b" ", headers["X-Eventbus-Timestamp"], headers["X-Eventbus-Signature"], SECRET)
    assert not verify_signature(body, headers["X-Eventbus-Timestamp"], headers["X-Eventbus-Signature"], "wrong")
    assert headers["X-Eventbus-Notification-Id"] == sent.id


def test_user_channels_and_unknown_channels(bus, start_worker, redis_client, namespace, webhook, smtp_server):
    worker = start_worker("tests.apps.channels", extra_env=worker_env(webhook, smtp_server))
    with pytest.raises(NotificationError, match="unknown notification channel 'sms'"):
        notify("u2", "x", "y", channels=["sms"])
    sent = notify("u2", "Custom", "channel", channels=["recording", "inbox"])
    wait_for(lambda: redis_client.llen(f"{namespace}:test:recording") == 1, 30, worker)
    assert json.loads(redis_client.lindex(f"{namespace}:test:recording", 0))["id"] == sent.id
    wait_for(lambda: inbox_unread_count("u2") == 1, 30, worker)


def test_user_registered_sends_welcome_and_verification_and_an_inbox_notification(
    bus,
    start_worker,
    webhook,
    smtp_server,
):
    worker = start_worker(extra_env={**worker_env(webhook, smtp_server), "EVENTBUS_DEFAULT_SUBSCRIBERS": "1"})
    publish_event(
        "user.registered",
        {"email": "newbie@example.com", "name": "Newbie", "verification_url": "https://app.example.com/verify/abc"},
    )
    wait_for(lambda: len(smtp_server.received) >= 2, 60, worker)
    wait_for(lambda: inbox_unread_count("newbie@example.com") == 1, 30, worker)
    smtp_server.settle()
    subjects = sorted(m.message["Subject"] for m in smtp_server.received)
    assert subjects == ["Verify your email address", "Welcome, Newbie!"]
    verification = next(m for m in smtp_server.received if m.message["Subject"].startswith("Verify"))
    assert "https://app.example.com/verify/abc" in verification.message.get_body(("plain",)).get_content()
    assert inbox_list("newbie@example.com")[0].kind == "welcome"
