"""What the ``memory://`` backend stores, in this process, as a typed :class:`~eventbus.stores.Stores`."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from eventbus.brokers.memory_inbox import MemoryInbox
from eventbus.brokers.memory_records import MemoryRecords
from eventbus.errors import ControlPlaneUnavailable
from eventbus.ledger_writer import LedgerWriter
from eventbus.settings import Settings
from eventbus.stores import ControlStore, Stores

if TYPE_CHECKING:
    from eventbus.brokers.memory import MemoryBroker


class MemoryPause:
    """Paused queues of one memory broker; a handed-back message goes to the end of its queue."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.lock = threading.Lock()

    def paused(self) -> set[str]:
        with self.lock:
            return set(self.broker.paused)

    def put_back(self, message: Any) -> None:
        self.broker.queues[message.queue_name].put(message._message.encode())

    def forget(self, paused: set[str]) -> None:
        """Nothing kept per queue."""


class MemoryStores(Stores):
    """The stores of one :class:`MemoryBroker`: no durable schedule, limits or crash recovery."""

    def __init__(self, broker: MemoryBroker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings
        self.namespace = broker.namespace

    @property
    def owner(self) -> str:
        return f"memory:{id(self.broker)}"

    def location(self) -> str:
        return "in this process"

    @property
    def ledger(self) -> LedgerWriter | None:
        return None

    @property
    def control(self) -> ControlStore:
        raise ControlPlaneUnavailable(
            "the memory:// broker keeps no control-plane store; set EVENTBUS_BROKER_URL=sqlite:///path.db or redis://…"
        )

    @cached_property
    def send_records(self) -> MemoryRecords:
        return MemoryRecords()

    @cached_property
    def inbox(self) -> MemoryInbox:
        return MemoryInbox()

    @property
    def schedule(self) -> None:
        return None

    @property
    def limits(self) -> None:
        return None

    @property
    def recovery(self) -> None:
        return None

    @cached_property
    def pause(self) -> MemoryPause:
        return MemoryPause(self.broker)
