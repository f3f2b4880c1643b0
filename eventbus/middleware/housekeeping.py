"""The background work every worker process does for the queues (Redis and SQLite).

Two daemon threads per worker process, started after boot:

- *heartbeat*: every ``heartbeat_interval_s`` one round trip writes this worker's heartbeat and
  renews its concurrency leases; every few seconds it also runs the janitor
  (:meth:`RedisRecovery.recover`), which redelivers the messages of workers whose heartbeat is older
  than ``heartbeat_timeout_s`` and dead-letters messages that keep killing their worker.
- *scheduler*: every ``scheduler_poll_ms`` it releases due scheduled messages to their queues and
  publishes due cron ticks (:mod:`eventbus.cron`).

On SQLite the heartbeat only renews concurrency leases (message leases expire by themselves, see
:mod:`eventbus.brokers.sqlite.broker`), and the scheduler only publishes cron ticks (delayed rows are
handed out by the consumers once due).

A live worker heartbeats from its own thread, so a worker whose threads are all busy on long jobs
is never mistaken for a dead one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, cast

import dramatiq

from eventbus import cron, signals
from eventbus.brokers import BusBroker, poison
from eventbus.clock import now_ms
from eventbus.event import Event
from eventbus.middleware.limits import LEASES
from eventbus.settings import Settings

logger = logging.getLogger("eventbus")


class Housekeeping(dramatiq.Middleware):
    """Heartbeats, crash recovery, the schedule promoter and cron ticks, in every worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop_schedule = threading.Event()
        self._stop_heartbeat = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cron_last_ms: dict[str, int] = {}

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Starts the heartbeat and scheduler threads."""
        self._beat(broker)
        self._register_schedules(broker)
        for name, target in (("heartbeat", self._heartbeat_loop), ("scheduler", self._schedule_loop)):
            thread = threading.Thread(target=target, args=(broker,), name=f"eventbus-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Stops releasing scheduled messages; heartbeats go on while in-flight jobs finish."""
        self._stop_schedule.set()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Stops the heartbeat once every job is done."""
        self._stop_heartbeat.set()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """Marks the message started, so a crash while it runs counts toward its lost deliveries."""
        recovery = cast(BusBroker, broker).stores.recovery
        if recovery is None:
            return
        try:
            recovery.mark_started(message)
        except Exception:  # bookkeeping for poison detection must never fail the job itself
            logger.warning("could not mark message %s started; it runs anyway", message.message_id)

    # heartbeat thread

    def _beat(self, broker: Any) -> None:
        """This worker is alive, and so are its concurrency leases (one round trip where the store can)."""
        ttl_ms = int(self.settings.heartbeat_timeout_s * 1000)
        stores = broker.stores
        if stores.recovery is not None:
            stores.recovery.beat(ttl_ms, LEASES.items())
        else:
            stores.limits.renew(list(LEASES.items()), ttl_ms)

    def _heartbeat_loop(self, broker: Any) -> None:
        interval_s = max(0.05, self.settings.heartbeat_interval_s)
        janitor_every_s = max(interval_s, min(2.0, self.settings.heartbeat_timeout_s / 3))
        next_janitor = time.monotonic() + janitor_every_s
        while not self._stop_heartbeat.wait(interval_s):
            try:
                self._beat(broker)
                if time.monotonic() >= next_janitor:
                    next_janitor = time.monotonic() + janitor_every_s
                    self._janitor(broker)
            except Exception:
                logger.warning("eventbus heartbeat failed; retrying in %.1f s", interval_s, exc_info=True)

    def _janitor(self, broker: Any) -> None:
        recovery = broker.stores.recovery
        if recovery is None:
            return
        done = recovery.recover(
            timeout_s=self.settings.heartbeat_timeout_s,
            max_lost=self.settings.max_lost_deliveries,
            suspect_spread_ms=self.settings.suspect_spread_ms,
        )
        if done.recovered:
            logger.warning(
                "redelivered %d message(s) held by %d worker(s) that stopped heartbeating",
                done.recovered,
                done.dead_workers,
            )
        writer = broker.stores.ledger if done.poisoned else None
        for message in done.poisoned:
            if writer is not None:
                writer.add(poison.dead_record(message))
            logger.error(
                "dead-lettered message %s (%s) on queue %r: %s",
                message.message_id,
                message.actor_name,
                message.queue_name,
                message.options.get("error"),
            )
            event = message.kwargs.get("event") if isinstance(message.kwargs, dict) else None
            if isinstance(event, dict):
                signals.dead_lettered.send(
                    Event.from_dict(event),
                    subscription=message.kwargs.get("subscription"),
                    error=message.options.get("error"),
                )

    # scheduler thread

    def _schedule_loop(self, broker: Any) -> None:
        boot_ms = now_ms()
        for found in cron.all_schedules():
            self._cron_last_ms.setdefault(found.name, boot_ms)
        while not self._stop_schedule.wait(self.settings.scheduler_poll_ms / 1000):
            try:
                self._promote(broker)
                self._run_cron(broker)
            except Exception:
                logger.warning("eventbus scheduler pass failed; retrying", exc_info=True)

    def _promote(self, broker: Any) -> None:
        while True:
            released = broker.stores.schedule.promote(1_000)
            for message in released:
                broker.emit_after("enqueue", message, None)
            if len(released) < 1_000:
                return

    def _run_cron(self, broker: Any) -> None:
        now = now_ms()
        for found in cron.all_schedules():
            last = self._cron_last_ms.setdefault(found.name, now)
            ticks = found.ticks(last, now)
            for tick in ticks:
                try:
                    cron.publish_tick(found, tick)
                except Exception:
                    logger.exception("schedule %r could not publish its tick at %d", found.name, tick)
            self._cron_last_ms[found.name] = now
            if ticks:
                broker.stores.schedule.record_tick(found.name, ticks[-1])

    def _register_schedules(self, broker: Any) -> None:
        found = cron.all_schedules()
        if found:
            broker.stores.schedule.register_schedules({s.name: json.dumps(s.describe()) for s in found})
