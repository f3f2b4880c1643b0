"""Delivery ids: stable per (event, subscription) and sorted by event time, so SQLite indexes stay local."""

from __future__ import annotations

import itertools
import time
import uuid

from eventbus.delivery import delivery_id
from eventbus.event import event_time_ms, new_event_id


def test_the_same_event_and_subscription_give_the_same_id_and_others_differ():
    event_id = new_event_id()
    assert delivery_id(event_id, "a") == delivery_id(event_id, "a")
    assert len({delivery_id(event_id, "a"), delivery_id(event_id, "b"), delivery_id(new_event_id(), "a")}) == 3


def test_ids_sort_by_event_time_whatever_the_subscription():
    ids = []
    for _ in range(5):
        event_id = new_event_id()
        ids.append([delivery_id(event_id, name) for name in ("zeta", "alpha", "mid")])
        time.sleep(0.002)
    for earlier, later in itertools.pairwise(ids):
        assert max(earlier) < min(later)


def test_an_id_is_a_version_8_uuid_carrying_the_event_millisecond():
    event_id = new_event_id()
    job_id = uuid.UUID(delivery_id(event_id, "a"))
    assert job_id.version == 8 and job_id.variant == uuid.RFC_4122
    assert job_id.int >> 80 == event_time_ms(event_id)
    assert event_time_ms(event_id.lower()) == event_time_ms(event_id)  # ULIDs are case-insensitive


def test_an_event_id_that_is_not_a_ulid_gives_a_stable_uuid5():
    for chosen in ("order-1234", "01M96KSS14K6X690GH5KN21PGU", "x" * 26):  # U is not Crockford base32
        assert event_time_ms(chosen) is None
        job_id = uuid.UUID(delivery_id(chosen, "a"))
        assert job_id.version == 5 and str(job_id) == delivery_id(chosen, "a")
