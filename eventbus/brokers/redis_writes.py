"""Group commit for a worker's per-job writes: start marks and acks share round trips to Redis.

Dramatiq pays a round trip per ack, and crash recovery (``redis_recovery``) adds one per job
start. Here both go into one per-process buffer:

- ``mark_started`` must be in Redis before the job runs (a job that kills its worker must have
  been counted), so the calling thread waits, but for a flush that carries every other thread's
  pending marks and acks with it: one pipeline instead of one call each.
- ``ack`` returns at once; its write rides with the next flush: the next job start of any thread,
  or the flusher thread ``ack_delay_s`` later when the worker is idle.

An acked message stays in its consumer's ``InHand`` record until its ack is written (see
``on_acked``), so a reconciliation never requeues a job that ran. A failed flush keeps everything
pending for the next one. A ``kill -9`` loses the acks not yet written, at most ``ack_delay_s`` of
them: those jobs run again (at least once), as with any ack that did not reach the broker. So do
the jobs whose acks are still pending when a worker stops while Redis is unreachable (Dramatiq would
block the stop until Redis came back; here the stop completes and logs how many will run again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from eventbus.brokers.redis import RedisBroker

logger = logging.getLogger("eventbus.redis")

Acked = Callable[[list[str]], None]


class GroupWriter:
    """The pending start marks and acks of one broker in this process."""

    def __init__(self, broker: RedisBroker, *, ack_delay_s: float = 0.002) -> None:
        self.broker = broker
        self.ack_delay_s = ack_delay_s
        self._guard = threading.Lock()
        self._flushing = threading.Lock()
        self._marks: list[str] = []
        self._acks: dict[tuple[str, str], Acked] = {}  # (queue, redis id) -> callback once written
        self._appended = 0  # marks ever added, and written, in order
        self._written = 0
        self._failure: tuple[int, BaseException] | None = None  # (last ticket of the failed batch, error)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._marks) + len(self._acks)

    def mark_started(self, redis_id: str) -> None:
        """Record that this worker started ``redis_id``; returns once it is in Redis.

        Raises the flush's error, at once, if a flush that carried this mark failed while the thread
        waited (a stalled Redis then costs each job start one timeout, not one per waiting thread).
        The mark stays pending and goes out with the next flush.
        """
        with self._guard:
            self._marks.append(redis_id)
            self._appended += 1
            ticket = self._appended
        with self._flushing:
            if self._written >= ticket:
                return
            failure = self._failure
            if failure is not None and failure[0] >= ticket:
                raise failure[1]
            self._flush_locked()

    def ack(self, queue_name: str, redis_id: str, on_acked: Acked) -> None:
        """Ack ``redis_id`` within ``ack_delay_s``; ``on_acked([redis_id])`` runs once it is written."""
        with self._guard:
            self._acks[(queue_name, redis_id)] = on_acked
        if self._thread is None or not self._thread.is_alive():
            self._start()
        self._wake.set()

    def flush(self) -> None:
        """Write everything pending now (a consumer closing, a worker stopping)."""
        with self._flushing:
            self._flush_locked()

    def _flush_locked(self) -> None:
        with self._guard:
            marks, acks, upto = self._marks, self._acks, self._appended
            self._marks, self._acks = [], {}
        if not marks and not acks:
            return
        try:
            try:
                self._send(marks, acks)
            except redis.exceptions.NoScriptError:  # Redis restarted and forgot the dispatch script
                self.broker.reload_scripts()
                self._send(marks, acks)  # SADD and ack are idempotent: sending the batch again is safe
        except BaseException as exc:
            with self._guard:  # keep them, in order, for the next flush
                self._marks[:0] = marks
                self._acks = {**acks, **self._acks}
            self._failure = (upto, exc)
            self._wake.set()  # the flusher retries them even if no job starts
            raise
        self._written, self._failure = upto, None
        by_callback: dict[Acked, list[str]] = {}
        for (_, redis_id), on_acked in acks.items():
            by_callback.setdefault(on_acked, []).append(redis_id)
        for on_acked, ids in by_callback.items():
            on_acked(ids)

    def _send(self, marks: list[str], acks: dict[tuple[str, str], Acked]) -> None:
        with self.broker.client.pipeline(transaction=False) as pipe:
            if marks:
                pipe.sadd(self.broker.recovery.started, *marks)
            ack = self.broker.ack_on(pipe)
            for queue_name, redis_id in acks:
                ack(queue_name, redis_id)
            pipe.execute()

    def _start(self) -> None:
        with self._guard:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="eventbus-acks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(self.ack_delay_s)  # let acks and job starts gather
            if not len(self):
                continue
            try:
                self.flush()
            except Exception as exc:  # the writes stay pending; try again shortly
                logger.warning("could not write %d ack(s) (%s); retrying", len(self._acks), exc)
                time.sleep(0.5)
                self._wake.set()
