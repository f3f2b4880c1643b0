"""One rule for attempts per queue: every job on a queue that always fails runs exactly the attempts
``eventbus queues`` shows for it (a subscriber delivery, a single email, a bulk chunk, a notification).

Real parts: the ``eventbus queues`` command in a subprocess, an SMTP server on loopback that refuses
every recipient with a 4xx, an HTTP server on loopback answering 500, and a TestBus whose worker runs
the real middleware (Retries decides when to stop; the mail job decides when a 4xx is final).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from eventbus import Event, declare_topic, publish_event, subscribe
from eventbus.errors import MailError, NotificationError
from eventbus.mail import get_send_record, send_bulk_email, send_email
from eventbus.notifications import notify
from eventbus.notifications.channel import register_channel, unregister_channel
from eventbus.notifications.webhook import WebhookChannel
from eventbus.send_record import SendState
from eventbus.settings import Settings
from eventbus.subscriber import unsubscribe
from eventbus.testing import TestBus
from tests.conftest import ROOT
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401

# Backoffs of a few ms on every queue (JOB_RETRY_DELAY sets each queue's first backoff), and one queue
# that only the environment configures.
QUICK = {"JOB_RETRY_DELAY": "5", "EXPORTS_QUEUE_ATTEMPTS": "4"}
_OURS = re.compile(r"_QUEUE_(CONCURRENCY|RATE_LIMIT|ATTEMPTS|RETRY_DELAY)$|^JOB_|^MAIL_MAX_RETRIES$|^EVENTBUS_")
REFUSAL = "451 4.3.0 try again later"


def environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any queue or retry variable, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not _OURS.search(k)}, **extra}


_shown: dict[tuple[tuple[str, str], ...], dict[str, int]] = {}


def shown_attempts(extra: dict[str, str]) -> dict[str, int]:
    """Attempts per queue as ``eventbus queues --json`` prints them under ``extra``."""
    key = tuple(sorted(extra.items()))
    if key not in _shown:
        out = subprocess.run(
            [sys.executable, "-m", "eventbus", "queues", "--json"],
            env={**environment(extra), "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        _shown[key] = {row["name"]: row["attempts"] for row in json.loads(out)}
    return _shown[key]


class FailingHook:
    """A real HTTP server on loopback that answers every POST with 500 and counts them."""

    def __init__(self) -> None:
        self.hits = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                hook.hits += 1
                self.send_response(500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def failing_channel() -> Iterator[tuple[str, FailingHook]]:
    """A webhook channel of this test's own, pointing at a server that always answers 500."""
    hook = FailingHook()
    threading.Thread(target=hook.server.serve_forever, daemon=True).start()
    name = f"failing-{uuid.uuid4().hex[:8]}"
    register_channel(WebhookChannel(hook.url, "s3cret", name=name, timeout_s=5))
    yield name, hook
    unregister_channel(name)
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def run_bus(smtp_server: SmtpServer) -> Callable[[dict[str, str]], TestBus]:
    """A TestBus on the settings the environment ``extra`` gives (backoffs as configured, not TestBus's)."""

    def make(extra: dict[str, str]) -> TestBus:
        settings = Settings.from_env(environment(extra))
        settings = replace(
            settings,
            smtp_host=smtp_server.host,
            smtp_port=smtp_server.port,
            smtp_from="noreply@example.com",
            default_subscribers=False,
        )
        return TestBus(settings)

    return make


@pytest.fixture
def failing_subscriber() -> Iterator[Callable[..., tuple[str, Counter[str]]]]:
    """Subscribe an always-failing function on a topic of its own; returns (topic, runs per event id)."""
    names: list[str] = []

    def make(queue: str, **options: Any) -> tuple[str, Counter[str]]:
        topic = f"attempts.failed_{queue}_{len(names)}"
        declare_topic(topic)
        runs: Counter[str] = Counter()

        def always_fails(event: Event) -> None:
            runs[event.id] += 1
            raise RuntimeError("always fails")

        name = f"attempts.{uuid.uuid4().hex[:8]}"
        subscribe(topic, name=name, queue=queue, **options)(always_fails)
        names.append(name)
        return topic, runs

    yield make
    for name in names:
        unsubscribe(name)


def dead_attempts(bus: TestBus) -> dict[str, int]:
    """Attempts of this test's dead letters by job id, as the control plane shows them.

    Left out: deliveries of topics this file did not declare, such as the ticks of a schedule another test
    module registered in this process (a TestBus runs every registered schedule).
    """
    letters = bus.control.dead_letters(limit=500).items
    return {d.job_id: d.attempts for d in letters if d.topic is None or d.topic.startswith("attempts.")}


QUEUES = ["default", "email", "exports", "notifications", "webhooks", "xp"]


def test_the_queues_covered_here_are_the_queues_eventbus_queues_shows():
    assert sorted(shown_attempts(QUICK)) == QUEUES


@pytest.mark.parametrize("queue", QUEUES)
def test_a_delivery_that_always_fails_runs_the_attempts_shown_for_its_queue(queue, run_bus, failing_subscriber):
    # Given a subscriber on ``queue`` that always fails
    topic, runs = failing_subscriber(queue)
    # When an event reaches it
    with run_bus(QUICK) as bus:
        event = publish_event(topic, {})
        bus.join()
    # Then it ran exactly the attempts `eventbus queues` shows, and its dead letter says so
    shown = shown_attempts(QUICK)[queue]
    assert runs[event.id] == shown
    assert list(dead_attempts(bus).values()) == [shown]


def send_one(to: list[str]) -> list[str]:
    return [send_email("welcome", to[0], {"name": "Ada"}).key]


def send_chunk(to: list[str]) -> list[str]:
    return send_bulk_email("welcome", to, {"name": "Team"}).keys


@pytest.mark.parametrize("send", [send_one, send_chunk], ids=["send_email", "send_bulk_email chunk"])
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"EMAIL_QUEUE_ATTEMPTS": "2", "MAIL_MAX_RETRIES": "6"},  # the queue's own variable wins
        {"MAIL_MAX_RETRIES": "2", "JOB_MAX_RETRIES": "6"},  # the older spelling wins over JOB_MAX_RETRIES
    ],
    ids=["built-in", "EMAIL_QUEUE_ATTEMPTS over MAIL_MAX_RETRIES", "MAIL_MAX_RETRIES over JOB_MAX_RETRIES"],
)
def test_an_email_refused_with_4xx_every_time_runs_the_attempts_shown_for_the_email_queue(
    send, extra, run_bus, smtp_server
):
    # Given an SMTP server that refuses every recipient with a temporary 4xx
    to = ["ada@example.com", "bob@example.com"][: 1 if send is send_one else 2]
    for address in to:
        smtp_server.refuse(address, REFUSAL)
    # When the email (or a bulk send of one chunk) goes out
    with run_bus({**QUICK, **extra}) as bus:
        keys = send(to)
        bus.join()
        records = [get_send_record(key) for key in keys]
    # Then each recipient was tried exactly the attempts `eventbus queues` shows for the email queue,
    # and each send record says failed after that many attempts
    shown = shown_attempts({**QUICK, **extra})["email"]
    assert Counter(smtp_server.rcpts) == {address: shown for address in to}
    assert smtp_server.received == []
    assert [(r.state, r.attempts) for r in records if r is not None] == [(SendState.FAILED, shown)] * len(to)
    # a single email's job is dead-lettered; a chunk's job ends once each email has its outcome recorded
    assert list(dead_attempts(bus).values()) == ([shown] if send is send_one else [])
    if extra:
        assert shown == 3 if "JOB_MAX_RETRIES" in extra else shown == 2


def test_a_notification_whose_channel_always_fails_runs_the_attempts_shown_for_its_queue(run_bus, failing_channel):
    # Given a channel whose webhook always answers 500
    name, hook = failing_channel
    # When a notification goes through it
    with run_bus(QUICK) as bus:
        notify("u1", "Hi", "there", channels=[name])
        bus.join()
    # Then it was posted exactly the attempts `eventbus queues` shows for the notifications queue
    shown = shown_attempts(QUICK)["notifications"]
    assert hook.hits == shown
    assert list(dead_attempts(bus).values()) == [shown]


def test_a_call_or_subscription_that_sets_max_retries_overrides_its_queue(
    run_bus, smtp_server, failing_channel, failing_subscriber
):
    # Given an SMTP server refusing everyone, a failing webhook, and a failing subscription with max_retries=1
    for address in ("ada@example.com", "bob@example.com", "cy@example.com"):
        smtp_server.refuse(address, REFUSAL)
    name, hook = failing_channel
    topic, runs = failing_subscriber("email", max_retries=1)
    # When each is sent with its own max_retries
    with run_bus(QUICK) as bus:
        send_email("welcome", "ada@example.com", {"name": "Ada"}, max_retries=1)
        send_bulk_email("welcome", ["bob@example.com", "cy@example.com"], {"name": "Team"}, max_retries=2)
        notify("u1", "Hi", "there", channels=[name], max_retries=0)
        event = publish_event(topic, {})
        bus.join()
    # Then each ran 1 + its own max_retries, whatever its queue's rule
    assert shown_attempts(QUICK)["email"] == 5 and shown_attempts(QUICK)["notifications"] == 3
    assert Counter(smtp_server.rcpts) == {"ada@example.com": 2, "bob@example.com": 3, "cy@example.com": 3}
    assert hook.hits == 1
    assert runs[event.id] == 2
    assert sorted(dead_attempts(bus).values()) == [1, 2, 2]  # the chunk's emails are failed in their records


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: send_email("welcome", "a@example.com", {"name": "A"}, max_retries=-1), MailError),
        (lambda: send_bulk_email("welcome", ["a@example.com"], {"name": "A"}, max_retries=True), MailError),
        (lambda: send_email("welcome", "a@example.com", {"name": "A"}, min_backoff_ms=1.5), MailError),
        (lambda: notify("u1", "Hi", "there", channels=["inbox"], max_retries="3"), NotificationError),
    ],
    ids=["negative", "bool", "float backoff", "str"],
)
def test_a_bad_max_retries_is_refused_at_the_call_with_the_fix(call, error, run_bus):
    with run_bus(QUICK) as bus:
        with pytest.raises(error, match=r"pass a whole number >= 0 .* or leave it out to use queue '\w+''s rule"):
            call()
        bus.join()
    assert dead_attempts(bus) == {}


def test_a_job_that_carries_no_retry_options_takes_its_queues_rule(run_bus, failing_channel):
    # Given a notification job without retry options (as enqueued by hand or by an older version)
    from eventbus.broker import get_broker
    from eventbus.delivery import build_message
    from eventbus.notification import Notification
    from eventbus.notifications.job import NOTIFICATIONS_QUEUE, NOTIFY_ACTOR

    name, hook = failing_channel
    with run_bus(QUICK) as bus:
        kwargs = {"notification": Notification("u1", "Hi", "there").to_dict(), "channel": name}
        # When it runs and always fails
        get_broker().enqueue(build_message(NOTIFICATIONS_QUEUE, NOTIFY_ACTOR, kwargs, {}, str(uuid.uuid4())))
        bus.join()
    # Then the Retries middleware gave it the notifications queue's attempts, not JOB_MAX_RETRIES's
    assert hook.hits == shown_attempts(QUICK)["notifications"] == 3
