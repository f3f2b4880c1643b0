"""What the ``memory://`` backend stores, in this process, as a typed :class:`~eventbus.stores.Stores`."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from eventbus.brokers.memory.inbox import MemoryInbox
from eventbus.brokers.memory.send_records import MemoryRecords
from eventbus.settings import Settings
from eventbus.stores import Stores

if TYPE_CHECKING:
    from eventbus.brokers.memory.broker import MemoryBroker
    from eventbus.brokers.memory.control import MemoryControlStore
    from eventbus.brokers.memory.ledger import MemoryLedger
    from eventbus.brokers.memory.limits import MemoryLimits
    from eventbus.brokers.memory.schedule import MemorySchedule


class MemoryPause:
    """Paused queues of one memory broker; a handed-back message goes to the head of its priority."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker

    def paused(self) -> set[str]:
        return self.broker.paused_queues()

    def put_back(self, message: Any) -> None:
        self.broker.put_back(message)

    def forget(self, paused: set[str]) -> None:
        """Nothing kept per queue."""


class MemoryStores(Stores):
    """The stores of one :class:`MemoryBroker`; no crash recovery (nothing outlives the process)."""

    def __init__(self, broker: MemoryBroker, settings: Settings) -> None:
        super().__init__(broker.namespace, settings)
        self.broker = broker

    @property
    def owner(self) -> str:
        return f"memory:{id(self.broker)}"

    def location(self) -> str:
        return "in this process"

    def ledger_store(self) -> MemoryLedger:
        return self.broker.ledger.with_retention(self.retention)

    @property
    def control(self) -> MemoryControlStore:
        return self.broker.control_store

    @cached_property
    def send_records(self) -> MemoryRecords:
        return MemoryRecords()

    @cached_property
    def inbox(self) -> MemoryInbox:
        return MemoryInbox()

    @property
    def schedule(self) -> MemorySchedule:
        return self.broker.schedule

    @property
    def limits(self) -> MemoryLimits:
        return self.broker.limits

    @property
    def recovery(self) -> None:
        return None

    @cached_property
    def pause(self) -> MemoryPause:
        return MemoryPause(self.broker)
