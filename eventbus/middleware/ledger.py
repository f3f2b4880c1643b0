"""Records every job transition in the ledger, through the backend's buffered ledger.

Hooks write into the per-process buffer of ``broker.stores.ledger``
(:class:`~eventbus.ledger_writer.LedgerWriter`); its flusher applies it in one round trip, so the
actor path pays no round trip to the store. A job's ``active`` write is held back until its next write
or the next flush, whichever comes first: a job that finishes within one flush costs one write
with both states in its history, and a longer job still shows ``active`` within one flush
interval. A worker's writes are compact (see :func:`eventbus.ledger.transition`) and built by the
flusher, not by the job's thread; on Redis a finished job's write (a :class:`Completion`) goes
with its ack instead, in the group commit's script call. The thread starts on first use
(publishers) or at worker boot, and is drained at worker shutdown and at interpreter exit. A
``kill -9`` loses at most the last ~25 ms of writes; the job's next write repairs its record.
"""

from __future__ import annotations

import functools
import logging
import threading
import traceback
from typing import Any, cast

import dramatiq

from eventbus.brokers import BusBroker
from eventbus.clock import now_ms
from eventbus.delivery import FANOUT_ACTOR
from eventbus.ledger import Completion, JobState, LedgerWrite, transition, worker_name
from eventbus.ledger_writer import LedgerWriter
from eventbus.settings import Settings

logger = logging.getLogger("eventbus.ledger")


class Ledger(dramatiq.Middleware):
    """Writes waiting/delayed/active/retrying/completed/dead for every message of the broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.writer: LedgerWriter | None = None
        self._local = threading.local()
        self._worker = worker_name()
        # message id -> (attempt, started at ms) of the jobs running here, from their start to their ack or nack.
        self._runs: dict[str, tuple[int, int]] = {}

    def bind(self, broker: Any) -> LedgerWriter | None:
        """The backend's buffered ledger (None if the ledger is off)."""
        if self.writer is None and self.settings.ledger:
            self.writer = broker.stores.ledger
        return self.writer

    def _write(self, broker: dramatiq.Broker, op: LedgerWrite) -> None:
        writer = self.writer or self.bind(broker)
        if writer is not None:
            writer.add(op)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start flushing as soon as the worker runs."""
        self._worker = worker_name()
        writer = self.bind(broker)
        if writer is not None:
            writer.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Drain the buffer: the last transitions of a stopping worker are not lost."""
        if self.writer is not None:
            self.writer.stop()

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        """waiting, delayed (eta in the future) or retrying (eta set by Retries after a failure)."""
        options = message.options
        retries = int(options.get("retries", 0))
        eta = options.get("eta")
        if eta is None:
            if retries == 0 and message.actor_name == FANOUT_ACTOR:
                # A fresh event: the publisher's hot path writes no record. The control plane finds a
                # waiting event in the broker (stored under its event id) until a worker takes it.
                return
            self._write(broker, transition(message, JobState.WAITING, retries + 1))
        elif retries and "traceback" in options:
            error = self._error_for(message.message_id) or _last_line(options.get("traceback"))
            tb = str(options["traceback"])
            self._write(
                broker,
                transition(message, JobState.RETRYING, retries, next_attempt_at_ms=eta, error=error, traceback=tb),
            )
        else:
            self._write(broker, transition(message, JobState.DELAYED, retries + 1, next_attempt_at_ms=eta))

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """active; remembers the attempt number and start time for the later writes."""
        inner = message._message  # not through the proxy: this runs for every job
        attempt = int(inner.options.get("retries", 0)) + 1
        at = now_ms()
        self._runs[inner.message_id] = (attempt, at)
        writer = self.writer or self.bind(broker)
        if writer is not None:
            writer.hold(inner.message_id, functools.partial(self._active, inner, attempt, at))

    def _active(self, message: dramatiq.Message[Any], attempt: int, at: int) -> LedgerWrite:
        return transition(
            message, JobState.ACTIVE, attempt, at_ms=at, compact=True, started_at_ms=at, worker=self._worker
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """completed, written from the worker thread (the consumer thread, which acks for every worker
        thread, stays free); or keep the error text for the retry's write, which Retries makes right
        after this hook."""
        if exception is not None:  # kept for the retry's write (a later message's id does not match it)
            self._local.error = (message.message_id, f"{type(exception).__name__}: {exception}")
            return
        run = self._runs.get(message.message_id)
        writer = self.writer
        if run is None or writer is None or message.failed:
            return
        inner = message._message
        attempt, at = run
        # Its active write still held (unsent): one write for both.
        started = at if writer.release(inner.message_id) is not None else None
        cast(BusBroker, broker).stores.complete(Completion(inner, attempt, started, now_ms(), self._worker))

    def after_ack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """The job is over here."""
        self._runs.pop(message.message_id, None)

    def before_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """Store the attempt count in the dead letter (Retries' count is one short for aborted jobs)."""
        run = self._runs.get(message.message_id)
        if run is not None:
            message.options["attempts"] = run[0]

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """dead: out of attempts (or aborted), with the final attempt's error and traceback."""
        exception: BaseException | None = getattr(message, "_exception", None)
        run = self._runs.pop(message.message_id, None)
        attempt = run[0] if run is not None else int(message.options.get("retries", 0)) + 1
        tb = message.options.get("traceback")
        if not tb and exception is not None:
            tb = "".join(traceback.format_exception(exception, limit=30))
        op = transition(
            message._message,
            JobState.DEAD,
            attempt,
            finished_at_ms=now_ms(),
            error=f"{type(exception).__name__}: {exception}" if exception else _last_line(tb),
            worker=self._worker,
            traceback=str(tb) if tb else None,
        )
        self._write(broker, op)

    def _error_for(self, message_id: str) -> str | None:
        stashed = getattr(self._local, "error", None)
        return stashed[1] if stashed and stashed[0] == message_id else None


def _last_line(text: object) -> str | None:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None
