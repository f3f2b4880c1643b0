"""The doorbell: a ring published in Redis reaches the bell of its queue in this process."""

from __future__ import annotations

import pytest

from eventbus.brokers.redis.doorbell import Doorbell
from tests.conftest import wait_for

pytestmark = pytest.mark.redis


def test_every_ring_of_a_queue_reaches_its_bell_and_no_other(redis_client, namespace):
    # Given a listener for two queues (it rings every bell once on subscribing: rings may have been missed)
    doorbell = Doorbell(redis_client, namespace)
    email, other = doorbell.bell("email"), doorbell.bell("other")
    wait_for(lambda: email.rings == 1 and other.rings == 1, 5)
    email.event.clear()
    # When the email queue is rung 100 times
    for _ in range(100):
        redis_client.publish(f"{namespace}:__bell__", "email")
    # Then its bell counted every ring and is set; the other one heard nothing
    wait_for(lambda: email.rings == 101, 5)
    assert email.event.is_set()
    assert other.rings == 1
