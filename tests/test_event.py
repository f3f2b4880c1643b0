"""Event ids are ULIDs: 26 Crockford base32 characters that sort by time."""

from __future__ import annotations

import time
from datetime import UTC

from eventbus.event import Event, new_event_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference_ulid(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def test_ids_sort_by_time_and_are_unique():
    ids = []
    for _ in range(5):
        ids.append(new_event_id())
        time.sleep(0.002)
    assert ids == sorted(ids)
    assert len({new_event_id() for _ in range(10_000)}) == 10_000


def test_id_encodes_the_millisecond_timestamp_like_a_reference_ulid():
    before = time.time_ns() // 1_000_000
    event_id = new_event_id()
    after = time.time_ns() // 1_000_000
    value = 0
    for char in event_id:
        value = value * 32 + CROCKFORD.index(char)
    assert before <= value >> 80 <= after
    assert reference_ulid(value) == event_id
    assert event_id[0] in "01234567"  # 130 bits of base32 for a 128-bit value


def test_event_round_trips_through_its_json_form():
    event = Event(topic="vote.created", payload={"a": [1, "x"]}, headers={"trace": "t1"})
    again = Event.from_dict(event.to_dict())
    assert again == event
    assert again.published_at.tzinfo == UTC
