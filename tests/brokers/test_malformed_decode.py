"""``eventbus.brokers.malformed``: what counts as unusable, and what its dead letter keeps."""

from __future__ import annotations

import json
import pickle

import dramatiq
import pytest

from eventbus.brokers.malformed import MALFORMED, MALFORMED_ACTOR, MalformedMessage, dead_letter, decode, raw_of
from eventbus.errors import EventBusError

GOOD = {
    "queue_name": "q",
    "actor_name": "a",
    "args": [],
    "kwargs": {},
    "options": {},
    "message_id": "m1",
    "message_timestamp": 1,
}


def test_a_well_formed_message_decodes():
    message = decode(json.dumps(GOOD).encode(), 1_000)
    assert (message.queue_name, message.actor_name, message.args) == ("q", "a", ())


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"{not json", "not a JSON Dramatiq message"),
        (pickle.dumps({"a": 1}), "not a JSON Dramatiq message"),
        (b"[1, 2]", "not a JSON Dramatiq message"),
        (json.dumps({**GOOD, "extra": 1}).encode(), "not a JSON Dramatiq message"),
        (json.dumps({**GOOD, "kwargs": []}).encode(), "field 'kwargs' is list, not dict"),
        (json.dumps({**GOOD, "message_timestamp": True}).encode(), "field 'message_timestamp' is bool"),
        (json.dumps({**GOOD, "kwargs": {"x": "y" * 2_000}}).encode(), "exceeds EVENTBUS_MAX_MESSAGE_BYTES=1000"),
    ],
    ids=["invalid-json", "pickle", "json-list", "unknown-field", "mistyped-kwargs", "bool-timestamp", "oversized"],
)
def test_unusable_bytes_raise_a_malformed_message_naming_the_problem(data, match):
    with pytest.raises(MalformedMessage, match=match) as info:
        decode(data, 1_000)
    assert isinstance(info.value, EventBusError)


def test_the_dead_letter_is_a_valid_message_keeping_the_raw_bytes_and_the_reason():
    letter = dead_letter(b"\x80\x04garbage", "q", "not a JSON Dramatiq message", "rid-1")
    again = dramatiq.Message.decode(letter.encode())
    assert again.actor_name == MALFORMED_ACTOR and again.queue_name == "q"
    assert again.options["reason"] == MALFORMED and again.options["redis_message_id"] == "rid-1"
    assert raw_of(again) == b"\x80\x04garbage" and again.options["raw_bytes"] == 9
    big = dead_letter(b"x" * 100_000, "q", "too big")
    assert big.options["raw_truncated"] is True and len(raw_of(big)) == 65_536
