"""``memory://``: the in-process broker and its stores, for unit tests."""

from eventbus.brokers.memory.broker import MemoryBroker

__all__ = ["MemoryBroker"]
