"""How messages and ledger writes become bytes: JSON, encoded by orjson (about ten times faster than ``json``).

The bytes are plain JSON, readable by Dramatiq's own ``JSONEncoder`` and by the Lua scripts
(cjson). Encoding is as strict as ``json.dumps``: a ``datetime``, a dataclass or any other object
that is not JSON raises ``TypeError`` (so publishing it raises PayloadNotSerializable). NaN and
infinities become ``null`` (``json`` would write invalid JSON), and UUIDs and enums are written as
their value. Integers beyond 64 bits, which orjson refuses, go through ``json`` instead. Decoding
stays with ``json``: orjson would read such integers as floats and lose digits.
"""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import orjson
from dramatiq.errors import DecodeError

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(data: Any) -> bytes:
    """``data`` as compact JSON bytes; TypeError for anything that is not JSON."""
    try:
        return orjson.dumps(data, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        return json.dumps(data, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON exactly (integers of any size); ValueError for anything else."""
    return json.loads(data)


class JSONEncoder(dramatiq.Encoder):
    """Dramatiq's message encoder, faster (set by :func:`eventbus.broker.set_broker`)."""

    def encode(self, data: dict[str, Any]) -> bytes:
        return dumps(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            decoded = loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise DecodeError(f"failed to decode message {data!r}", data, exc) from None  # type: ignore[no-untyped-call]
        if not isinstance(decoded, dict):
            raise DecodeError(f"message is not a JSON object: {data!r}", data, TypeError("not an object"))  # type: ignore[no-untyped-call]
        return decoded
