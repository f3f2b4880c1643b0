"""Control-plane upkeep in every worker: worker heartbeats, dead-letter retention, ledger trimming, the stats log.

Retention runs on a schedule (every EVENTBUS_HOUSEKEEPING_INTERVAL_S, by one worker process at a
time), not by the chance of Dramatiq's maintenance roll. The stats block is logged every
EVENTBUS_STATS_INTERVAL_S (0: never) by one process per host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

import dramatiq

from eventbus.clock import now_ms
from eventbus.ledger import JobState, canonical_queue, worker_name
from eventbus.settings import Settings
from eventbus.subscriber import all_subscriptions

if TYPE_CHECKING:
    from eventbus.control import ControlPlane
    from eventbus.reports import Stats

logger = logging.getLogger("eventbus.upkeep")

HEARTBEAT_INTERVAL_S = 2.0


class Upkeep(dramatiq.Middleware):
    """Registers this worker's queues and subscriptions, then keeps the store tidy while it runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = worker_name()
        self._cp: ControlPlane | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Announce queues and subscriptions (for the control plane), then start the thread."""
        from eventbus.control import ControlPlane
        from eventbus.errors import ControlPlaneUnavailable

        try:
            cp = ControlPlane(broker, self.settings)
        except ControlPlaneUnavailable:  # a broker from outside eventbus keeps no control data
            return
        self._name = worker_name()
        self._cp = cp
        cp.store.register_queues(cp.local_queues())
        subs = {
            s.name: json.dumps(
                {
                    "pattern": s.pattern,
                    "queue": s.queue or self.settings.default_queue,
                    "priority": s.priority.value,
                    "max_retries": s.max_retries,
                    "min_backoff_ms": s.min_backoff_ms,
                    "max_backoff_ms": s.max_backoff_ms,
                }
            )
            for s in all_subscriptions()
        }
        cp.store.register_subscriptions(subs)
        self._heartbeat(cp)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(cp,), name="eventbus.upkeep", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Leave the live-worker list at once rather than after the heartbeat timeout."""
        if self._thread is not None and self._cp is not None:
            self._thread.join(5)
            with contextlib.suppress(Exception):  # shutting down anyway
                self._cp.store.forget_worker(self._name)

    def _run(self, cp: ControlPlane) -> None:
        due = {"heartbeat": 0.0, "retention": 0.0, "stats": time.monotonic() + self.settings.stats_interval_s}
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= due["heartbeat"]:
                    self._heartbeat(cp)
                    due["heartbeat"] = now + HEARTBEAT_INTERVAL_S
                if now >= due["retention"]:
                    self.enforce_retention(cp)
                    due["retention"] = now + self.settings.housekeeping_interval_s
                if self.settings.stats_interval_s > 0 and now >= due["stats"]:
                    self._log_stats(cp)
                    due["stats"] = now + self.settings.stats_interval_s
            except Exception as exc:  # Redis away: try again at the next tick
                logger.warning("housekeeping failed (%s); retrying", exc)
            wait = min(due.values()) - time.monotonic()
            if self.settings.stats_interval_s <= 0:
                wait = min(due["heartbeat"], due["retention"]) - time.monotonic()
            self._stop.wait(max(0.05, wait))

    def _heartbeat(self, cp: ControlPlane) -> None:
        cp.store.heartbeat(self._name, now_ms())

    def enforce_retention(self, cp: ControlPlane) -> None:
        """Purge dead letters past their TTL and trim aged records; one process per interval does it."""
        lock_ms = max(100, int(self.settings.housekeeping_interval_s * 900))
        if not cp.store.try_lock("housekeeping:lock", self._name, lock_ms):
            return
        purged = cp.purge_dead_letters(older_than_s=self.settings.dead_letter_ttl_s)
        trimmed = 0
        for queue in cp.queues():
            trimmed += cp.store.trim(
                queue, JobState.COMPLETED, older_than_ms=now_ms() - self.settings.completed_max_age_s * 1000
            )
            trimmed += cp.store.trim(
                queue, JobState.FAILED, older_than_ms=now_ms() - self.settings.failed_max_age_s * 1000
            )
        cp.store.prune_workers(now_ms() - 3_600_000)
        if purged or trimmed:
            logger.info("housekeeping: purged %d expired dead letters, trimmed %d old job records", purged, trimmed)

    def _log_stats(self, cp: ControlPlane) -> None:
        lock_ms = max(100, int(self.settings.stats_interval_s * 900))
        if cp.store.try_lock(f"statslog:{socket.gethostname()}", self._name, lock_ms):
            logger.info("%s", format_stats(cp.stats(), cp.namespace))


def format_stats(stats: Stats, namespace: str) -> str:
    """The statistics block workers log: one line per queue, then one per topic."""
    lines = [f"eventbus stats (namespace {namespace})"]
    header = f"  {'queue':<20} {'waiting':>8} {'active':>7} {'delayed':>8} {'completed':>10} {'failed':>7}"
    lines.append(header + f" {'dead':>6} {'paused':>6} {'last min':>9}")
    for q in stats.queues:
        lines.append(
            f"  {canonical_queue(q.queue):<20} {q.waiting:>8} {q.active:>7} {q.delayed:>8} {q.completed:>10} "
            f"{q.failed:>7} {q.dead:>6} {'yes' if q.paused else 'no':>6} {q.processed_last_minute:>9}"
        )
    for t in stats.topics:
        lines.append(f"  topic {t.topic}: published {t.published}, deliveries {t.deliveries}, failed {t.failed}")
    return "\n".join(lines)
