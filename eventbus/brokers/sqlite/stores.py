"""Everything the bus keeps in the SQLite file, as the typed :class:`~eventbus.stores.Stores` of one broker."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from eventbus.brokers.sqlite.inbox import SQLiteInbox
from eventbus.brokers.sqlite.ledger import SQLiteLedger
from eventbus.brokers.sqlite.pause import SQLitePause
from eventbus.brokers.sqlite.send_records import SQLiteSendRecords
from eventbus.settings import Settings
from eventbus.stores import Stores

if TYPE_CHECKING:
    from eventbus.brokers.sqlite.broker import SQLiteBroker
    from eventbus.brokers.sqlite.control import SQLiteControlStore
    from eventbus.brokers.sqlite.limits import SQLiteLimits
    from eventbus.brokers.sqlite.recovery import SQLiteRecovery
    from eventbus.brokers.sqlite.schedule import SQLiteSchedule


class SQLiteStores(Stores):
    """The stores of one :class:`SQLiteBroker`, each built on first use (its tables too)."""

    def __init__(self, broker: SQLiteBroker, settings: Settings) -> None:
        super().__init__(broker.namespace, settings)
        self.broker = broker

    @property
    def owner(self) -> str:
        return self.broker.owner

    def location(self) -> str:
        return f"file={self.broker.path}"

    def ledger_store(self) -> SQLiteLedger:
        return SQLiteLedger(self.broker.store, self.namespace, self.retention)

    @cached_property
    def control(self) -> SQLiteControlStore:
        from eventbus.brokers.sqlite.control import SQLiteControlStore

        return SQLiteControlStore(self.broker, self.settings)

    @cached_property
    def send_records(self) -> SQLiteSendRecords:
        return SQLiteSendRecords(self.broker.store, self.settings.mail_record_ttl_s)

    @cached_property
    def inbox(self) -> SQLiteInbox:
        return SQLiteInbox(self.broker.store)

    @property
    def schedule(self) -> SQLiteSchedule:
        return self.broker.schedule

    @property
    def limits(self) -> SQLiteLimits:
        return self.broker.limits

    @property
    def recovery(self) -> SQLiteRecovery:
        return self.broker.runs

    @cached_property
    def pause(self) -> SQLitePause:
        return SQLitePause(self.broker)
