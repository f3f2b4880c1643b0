"""Group commit for a worker's per-job writes: start marks and acks share round trips to the broker.

Dramatiq pays a round trip per ack (a transaction per ack on SQLite), and crash recovery adds a
write per job start. Here both go into one per-process buffer, written by the broker's ``send``
(Redis: one pipeline; SQLite: one transaction):

- ``mark_started(wait=True)`` is stored before the job runs (a job that kills its worker must be
  counted), so the calling thread waits, but for a flush that carries every other thread's
  pending marks and acks with it: one write instead of one each. The broker asks for that wait
  only for a message that was already in the hands of a worker that died (see
  :mod:`eventbus.brokers.redis.recovery`); any other mark, like an ack, returns at once.
- ``ack`` returns at once; its write rides with the next flush: the next waiting job start of
  any thread, or the flusher thread ``ack_delay_s`` later.

An acked message stays in its consumer's ``InHand`` record until its ack is written (see
``on_acked``), so a reconciliation never requeues a job that ran. A failed flush keeps everything
pending for the next one. A ``kill -9`` loses the acks not yet written, at most ``ack_delay_s`` of
them: those jobs run again (at least once), as with any ack that did not reach the broker. So do
the jobs whose acks are still pending when a worker stops while the broker is unreachable (Dramatiq would
block the stop until Redis came back; here the stop completes and logs how many will run again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("eventbus.broker")

Acked = Callable[[list[Any]], None]
AckKey = tuple[str, Any]  # (queue name, the broker's id of the message)
Send = Callable[[list[Any], list[AckKey]], None]


class GroupWriter:
    """The pending start marks and acks of one broker in this process.

    ``send(marks, acks)`` writes a batch atomically enough that sending it again is harmless.
    """

    def __init__(self, send: Send, *, ack_delay_s: float = 0.002) -> None:
        self.send = send
        self.ack_delay_s = ack_delay_s
        self._guard = threading.Lock()
        self._flushing = threading.Lock()
        self._marks: list[Any] = []
        self._acks: dict[AckKey, Acked] = {}  # (queue, message id) -> callback once written
        self._appended = 0  # writes ever added, and written, in order (a flush takes all pending)
        self._written = 0
        self._failure: tuple[int, BaseException] | None = None  # (last ticket of the failed batch, error)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._marks) + len(self._acks)

    def mark_started(self, message_id: Any, *, wait: bool = True) -> None:
        """Record that this worker started ``message_id``: before returning, or within ``ack_delay_s``.

        Raises the flush's error, at once, if a flush that carried this mark failed while the thread
        waited (a stalled broker then costs each job start one timeout, not one per waiting thread).
        The mark stays pending and goes out with the next flush.
        """
        self._add(lambda: self._marks.append(message_id), wait=wait)

    def ack(self, queue_name: str, message_id: Any, on_acked: Acked, *, wait: bool = False) -> None:
        """Ack ``message_id``: within ``ack_delay_s``, or before returning with ``wait=True``.

        ``on_acked([message_id])`` runs once the ack is written.
        """
        self._add(lambda: self._acks.__setitem__((queue_name, message_id), on_acked), wait=wait)

    def _add(self, put: Callable[[], None], *, wait: bool) -> None:
        with self._guard:
            put()
            self._appended += 1
            ticket = self._appended
        if not wait:
            if self._thread is None or not self._thread.is_alive():
                self._start()
            self._wake.set()
            return
        with self._flushing:
            if self._written >= ticket:
                return
            failure = self._failure
            if failure is not None and failure[0] >= ticket:
                raise failure[1]
            self._flush_locked()

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
            self.send(marks, list(acks))
        except BaseException as exc:
            with self._guard:  # keep them, in order, for the next flush
                self._marks[:0] = marks
                self._acks = {**acks, **self._acks}
            self._failure = (upto, exc)
            self._wake.set()  # the flusher retries them even if no job starts
            raise
        self._written, self._failure = upto, None
        by_callback: dict[Acked, list[Any]] = {}
        for (_, message_id), on_acked in acks.items():
            by_callback.setdefault(on_acked, []).append(message_id)
        for on_acked, ids in by_callback.items():
            on_acked(ids)

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
