"""Brokers: Dramatiq brokers extended with what the bus needs (bulk, once-only enqueue, priority, pause)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import dramatiq

from eventbus.priority import rank_of

if TYPE_CHECKING:
    from eventbus.stores import Stores

Message = dramatiq.Message[Any]

PRIORITY_SUFFIX = {0: ".p0", 1: ".p1", 2: "", 3: ".p3"}


def list_suffix(message: Message) -> str:
    """The per-priority list a message waits in ('' for NORMAL, so plain Dramatiq tools still see it)."""
    return PRIORITY_SUFFIX[rank_of(message)]


@runtime_checkable
class BusBroker(Protocol):
    """What the bus needs beyond ``dramatiq.Broker``; every eventbus broker implements it."""

    namespace: str
    stores: Stores  # everything the backend stores; features are handed the part they use

    def enqueue_many(
        self,
        messages: Sequence[Message],
        *,
        delay_ms: int | None = None,
        once_keys: Sequence[str | None] | None = None,
        once_ttl_s: int = 86_400,
    ) -> list[Message]:
        """Enqueue in one round trip; a message whose once-key was seen within the TTL is skipped.

        Every message is encoded before anything is written, so an unencodable one writes nothing;
        all or none are written, so a call that raises wrote none. Returns the messages actually
        enqueued (as stored: with broker ids, queue and eta).
        """
        ...
