"""Pause and resume a queue across every worker.

The broker's fetch already hands out nothing for a paused queue (Redis: listed in
``<ns>:__paused__``; SQLite: a row in ``paused``; memory: the broker's paused set). This gate
covers messages a worker fetched before the pause: when one reaches a worker thread, it goes back
to the head of its priority (Redis list / SQLite row made visible at once / memory queue) with its
data kept, and is skipped. Each process refreshes
its copy of the paused set every 100 ms, so no job of a paused queue starts more than ~100 ms
after the pause; a message of a queue the copy still shows paused reads the set again before it is
handed back, so a resume takes effect with the next fetch, not up to 100 ms later.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.middleware import SkipMessage

from eventbus.brokers import list_suffix

logger = logging.getLogger("eventbus.pause")

REFRESH_INTERVAL_S = 0.1

# Un-ack the message (its data stays) and put it back at the head of its list, right after the one this process put
# back before it (so prefetched messages keep their order).
_PUT_BACK = """
redis.call("srem", KEYS[1], ARGV[1])
if ARGV[2] ~= "" and redis.call("linsert", KEYS[2], "AFTER", ARGV[2], ARGV[1]) > 0 then
    return 1
end
redis.call("lpush", KEYS[2], ARGV[1])
return 1
"""


def paused_key(namespace: str) -> str:
    """The set of paused queue names (read by the broker's fetch script too)."""
    return f"{namespace}:__paused__"


class _SkippedFilter(logging.Filter):
    """Drop Dramatiq's "Message … was skipped" warning for messages the gate handed back."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and getattr(args[0], "_eventbus_paused", False))


class PauseGate(dramatiq.Middleware):
    """Hands prefetched messages of paused queues back to the broker instead of running them."""

    def __init__(self) -> None:
        self.paused: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, tuple[str, str]] = {}  # list key -> (queue, last id put back)
        self._lock = threading.Lock()
        self._script: Any = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Read the paused set now, then keep it fresh."""
        from eventbus.brokers.memory import MemoryBroker
        from eventbus.brokers.sqlite import SQLiteBroker

        if isinstance(broker, SQLiteBroker):
            self._script = _put_back_row
        elif isinstance(broker, MemoryBroker):
            self._script = _put_back_memory
        elif hasattr(broker, "client"):
            self._script = broker.client.register_script(_PUT_BACK)
        else:
            return
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_SkippedFilter())
        self._refresh(broker)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(broker,), name="eventbus-pause", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def before_process_message(self, broker: Any, message: Any) -> None:
        """Put a message of a paused queue back at the head of its list and skip it."""
        if message.queue_name not in self.paused or self._script is None:
            return
        self._refresh(broker)  # resumed since the last refresh? then it runs: a resume takes effect at once
        if message.queue_name not in self.paused:
            return
        if self._script in (_put_back_row, _put_back_memory):
            self._script(broker, message)
            message._eventbus_paused = True
            raise SkipMessage(f"queue {message.queue_name!r} is paused")
        namespace = broker.namespace
        target = f"{namespace}:{message.queue_name}{list_suffix(message._message)}"
        acks = f"{namespace}:__acks__.{broker.broker_id}.{message.queue_name}"
        redis_id = message.options["redis_message_id"]
        with self._lock:
            pivot = self._last.get(target, ("", ""))[1]
            self._script(keys=[acks, target], args=[redis_id, pivot])
            self._last[target] = (message.queue_name, redis_id)
        # Dramatiq acks a skipped message next. If this process fetched the message again in the
        # meantime (right after a resume), that ack would delete the data of the new copy: point it
        # at an id that does not exist, so it is a no-op.
        message.options["redis_message_id"] = f"handed-back:{redis_id}"
        message._eventbus_paused = True
        raise SkipMessage(f"queue {message.queue_name!r} is paused")

    def _refresh(self, broker: Any) -> None:
        try:
            if self._script in (_put_back_row, _put_back_memory):
                paused = frozenset(broker.paused_queues())
            else:
                paused = frozenset(q.decode() for q in broker.client.smembers(paused_key(broker.namespace)))
        except Exception as exc:  # keep the last known set while Redis is away
            logger.warning("cannot read paused queues (%s)", exc)
            return
        if paused != self.paused:
            with self._lock:
                self._last = {k: v for k, v in self._last.items() if v[0] in paused}
            self.paused = paused

    def _run(self, broker: dramatiq.Broker) -> None:
        while not self._stop.wait(REFRESH_INTERVAL_S):
            self._refresh(broker)


def _put_back_memory(broker: Any, message: Any) -> None:
    """memory://: the message goes back to the head of its priority; Dramatiq's ack of it frees its slot."""
    broker.put_back(message)


def _put_back_row(broker: Any, message: Any) -> None:
    """SQLite: copy the fetched row back at the head of its priority, visible at once.

    Dramatiq acks the skipped message next, which deletes the leased original and frees this
    process's lease on it through the consumer that fetched it.
    """
    with broker.store.transaction() as conn:
        conn.execute(
            "INSERT INTO messages (queue, rank, visible_at, eta, enqueued_at, message_id, data) "
            "SELECT queue, rank, 0, eta, enqueued_at, message_id, data FROM messages WHERE id = ?",
            (message.row_id,),
        )
