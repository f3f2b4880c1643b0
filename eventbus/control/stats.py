"""Queue and topic statistics, read in one round trip from the broker's store."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from eventbus.outbox import outbox_status
from eventbus.reports import Stats
from eventbus.send_record import COUNTERS

if TYPE_CHECKING:
    from eventbus.control import ControlPlane


def read_stats(cp: ControlPlane) -> Stats:
    """Stats of every known queue and topic, the email send counters, and the local publish outbox."""
    counts = cp.bus_broker.stores.send_records.stats()
    mail = {name: counts.get(name, 0) for name in COUNTERS}
    return replace(cp.store.stats(cp.local_queues()), outbox=outbox_status(cp.settings), mail=mail)
