"""The message encoder: plain JSON, as strict as ``json``, exact for integers of any size."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pytest
from dramatiq.encoder import JSONEncoder as DramatiqJSON

from eventbus import encoder


def test_messages_are_plain_json_that_dramatiqs_own_encoder_reads():
    data = {"kwargs": {"event": {"payload": {"name": "Zoë", "n": 3, "ok": True, "none": None}}}, "args": []}
    assert DramatiqJSON().decode(encoder.JSONEncoder().encode(data)) == data


def test_integers_beyond_64_bits_round_trip_exactly():
    data = {"big": -195179445941110636544, "bigger": 2**200, "small": [1, -1]}
    assert encoder.JSONEncoder().decode(encoder.JSONEncoder().encode(data)) == data


def test_what_orjson_refuses_but_json_writes_still_round_trips():
    # a lone surrogate (aiosmtplib decodes odd bytes in an SMTP reply so), deep nesting, int keys
    deep: list = []
    cur = deep
    for _ in range(300):
        cur.append([])
        cur = cur[0]
    for data in ({"error": "421 bad \udcff byte"}, {"deep": deep}, {"by_id": {1: "a"}}):
        assert encoder.JSONEncoder().decode(encoder.dumps(data)) == json.loads(json.dumps(data))


@pytest.mark.parametrize("value", [datetime(2026, 1, 1), {1, 2}, object(), b"bytes", {datetime(2026, 1, 1): 1}])
def test_what_is_not_json_raises_type_error(value):
    with pytest.raises(TypeError):
        encoder.dumps({"x": value})


def test_nan_is_written_as_null_never_as_invalid_json():
    assert json.loads(encoder.dumps({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}
