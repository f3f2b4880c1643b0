"""Everything the bus keeps in Redis, as the typed :class:`~eventbus.stores.Stores` of one broker."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from eventbus.broker import redact
from eventbus.brokers.redis.control import RedisControlStore
from eventbus.brokers.redis.inbox import RedisInbox
from eventbus.brokers.redis.ledger import RedisLedger
from eventbus.brokers.redis.pause import RedisPause
from eventbus.brokers.redis.send_records import RedisRecords
from eventbus.ledger import Completion
from eventbus.settings import Settings
from eventbus.stores import Stores

if TYPE_CHECKING:
    from eventbus.brokers.redis.broker import RedisBroker
    from eventbus.brokers.redis.limits import RedisLimits
    from eventbus.brokers.redis.recovery import RedisRecovery
    from eventbus.brokers.redis.schedule import RedisSchedule


class RedisStores(Stores):
    """The stores of one :class:`RedisBroker`, each built on first use."""

    def __init__(self, broker: RedisBroker, settings: Settings) -> None:
        super().__init__(broker.namespace, settings)
        self.broker = broker
        self._done: dict[str, Completion] = {}  # job id -> its completion, until its ack

    @property
    def owner(self) -> str:
        return str(self.broker.broker_id)

    def location(self) -> str:
        return redact(self.broker.url)

    def ledger_store(self) -> RedisLedger:
        b = self.broker
        return RedisLedger(b.client, b.namespace, self.retention, b.direct)

    @cached_property
    def control(self) -> RedisControlStore:
        return RedisControlStore(self.broker, self.settings)

    @cached_property
    def send_records(self) -> RedisRecords:
        b = self.broker
        return RedisRecords(b.client, b.url, b.namespace, self.settings.mail_record_ttl_s)

    @cached_property
    def inbox(self) -> RedisInbox:
        return RedisInbox(self.broker)

    @property
    def schedule(self) -> RedisSchedule:
        return self.broker.schedule

    @property
    def limits(self) -> RedisLimits:
        return self.broker.limits

    @property
    def recovery(self) -> RedisRecovery:
        return self.broker.recovery

    @cached_property
    def pause(self) -> RedisPause:
        return RedisPause(self.broker)

    def complete(self, done: Completion) -> None:
        """Kept until the job's ack, and written with it in the same script call."""
        self._done[done.job_id] = done

    def take_completion(self, message_id: str) -> Completion | None:
        """The completion of an acked job, for the ack's write (None: the ledger keeps no record of it)."""
        return self._done.pop(message_id, None)
