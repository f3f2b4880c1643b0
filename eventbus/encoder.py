"""How messages and ledger writes become bytes: JSON, encoded by orjson (about ten times faster than ``json``).

The bytes are plain JSON, readable by Dramatiq's own ``JSONEncoder`` and by the Lua scripts
(cjson). Whatever orjson refuses (integers beyond 64 bits, strings with lone surrogates, as
aiosmtplib makes of odd bytes in a server reply, very deep nesting, non-string keys) goes
through ``json`` instead, so ``json``'s rules decide: a ``datetime``, a dataclass or any other
object that is not JSON raises ``TypeError`` (so publishing it raises PayloadNotSerializable).
Where orjson accepts more than ``json``, it writes the value: NaN and infinities become ``null``
and UUIDs and enums their value. Decoding stays with ``json``: orjson would read big integers as
floats and lose digits.
"""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import orjson
from dramatiq.errors import DecodeError

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(data: Any) -> bytes:
    """``data`` as compact JSON bytes; TypeError for anything that is not JSON."""
    try:
        return orjson.dumps(data, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":")).encode()  # ASCII: json escapes the rest


def dumps_for_lua(data: Any) -> bytes:
    """Like :func:`dumps`, for text the Lua scripts decode: cjson cannot read an escaped lone surrogate,
    so such characters (odd bytes in an SMTP reply, say) become ``?`` (fine for ledger display text)."""
    try:
        return orjson.dumps(data, option=_OPTIONS)
    except orjson.JSONEncodeError:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8", "replace")


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
