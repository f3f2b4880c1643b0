"""Paused queues in the SQLite file: rows of ``paused`` (the fetch skips them) and the hand-back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventbus.brokers.sqlite.broker import SQLiteBroker


class SQLitePause:
    """The paused queues of one file, and how a fetched message goes back."""

    def __init__(self, broker: SQLiteBroker) -> None:
        self.broker = broker

    def paused(self) -> set[str]:
        return set(self.broker.paused_queues())

    def put_back(self, message: Any) -> None:
        """Copy the fetched row back at the head of its priority, visible at once.

        Dramatiq acks the skipped message next, which deletes the leased original and frees this
        process's lease on it through the consumer that fetched it.
        """
        with self.broker.store.transaction() as conn:
            conn.execute(
                "INSERT INTO messages (queue, rank, visible_at, eta, enqueued_at, message_id, data) "
                "SELECT queue, rank, 0, eta, enqueued_at, message_id, data FROM messages WHERE id = ?",
                (message.row_id,),
            )

    def forget(self, paused: set[str]) -> None:
        """Nothing to forget: rows keep their own order."""
