"""A job that fails while the broker is down keeps its retry (Dramatiq would ack it and drop the retry)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from dataclasses import replace

import dramatiq

from eventbus.broker import make_broker
from eventbus.delivery import install_actors
from eventbus.middleware.retries import PatientRetries
from eventbus.settings import Settings
from tests.conftest import need
from tests.private_redis import RedisServer


def stored_message_ids(client) -> set[str]:
    """Every message id stored anywhere in this private Redis (queue hashes, the schedule, sorted sets)."""
    found: set[str] = set()
    for key in client.scan_iter():
        kind = client.type(key).decode()
        values = client.hvals(key) if kind == "hash" else client.zrange(key, 0, -1) if kind == "zset" else []
        for value in values:
            # A delayed retry waits in the schedule hash as "queue\nlist\nredis id\n<encoded message>".
            encoded = value.split(b"\n", 3)[-1] if key.endswith(b"schedule.msgs") else value
            try:
                found.add(json.loads(encoded)["message_id"])
            except (ValueError, KeyError, TypeError):
                continue
    return found


def test_the_retry_of_a_job_that_failed_during_an_outage_is_enqueued_once_the_broker_is_back(tmp_path):
    need("redis-server", shutil.which("redis-server") is not None)
    server = RedisServer(tmp_path / "redis", persistent=False)
    server.start()
    settings = replace(Settings(), broker_url=server.url, namespace="retries", publish_timeout_s=1.0)
    broker = make_broker(settings)
    install_actors(broker)
    (retries,) = [m for m in broker.middleware if isinstance(m, PatientRetries)]
    retries.wait_s = 0.1
    message = dramatiq.Message(
        queue_name="default",
        actor_name="eventbus.deliver",
        args=(),
        kwargs={"event": {}, "subscription": "s"},
        options={"max_retries": 3, "min_backoff": 100, "max_backoff": 100},
        message_id=str(uuid.uuid4()),
        message_timestamp=int(time.time() * 1000),
    )
    try:
        # Given a job that just failed, and a broker that went down meanwhile (back 1.5 s later)
        server.kill()
        threading.Timer(1.5, server.start).start()
        proxy = dramatiq.MessageProxy(message)
        # When the Retries middleware handles the failure
        started = time.monotonic()
        retries.after_process_message(broker, proxy, exception=RuntimeError("boom"))
        # Then it waited for the broker instead of dropping the retry, and the retry is stored
        assert time.monotonic() - started >= 1.0
        assert not proxy.failed and proxy.options["retries"] == 1
        with server.client() as client:
            assert message.message_id in stored_message_ids(client)
    finally:
        broker.client.connection_pool.disconnect()
        server.stop()
