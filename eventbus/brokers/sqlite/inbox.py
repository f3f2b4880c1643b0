"""The in-app notification inbox on the SQLite broker, in the broker's file (component ``inbox``).

One row per (user, notification id): the notification as JSON, its creation time (the order:
newest first, ties by id as on Redis) and whether it was read. Storing is idempotent by id and
trims the user's oldest rows past ``inbox_max_items`` in the same transaction.
"""

from __future__ import annotations

import json

from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.notification import Notification

COMPONENT = "inbox"

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS inbox (
        user_id TEXT NOT NULL,
        id TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        read INTEGER NOT NULL DEFAULT 0,
        data TEXT NOT NULL,
        PRIMARY KEY (user_id, id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS inbox_newest ON inbox (user_id, created_us, id)
    """,
]

_NEWEST = "ORDER BY created_us DESC, id DESC"


class SQLiteInbox:
    """Every user's inbox in one SQLite file (same surface as the in-memory inbox)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.store.ensure_schema(COMPONENT, MIGRATIONS)

    def store_notification(self, n: Notification, limit: int) -> None:
        """Store ``n`` unread unless its id is there already; keep the newest ``limit`` of its user."""
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO inbox (user_id, id, created_us, data) VALUES (?, ?, ?, ?)",
                (n.user_id, n.id, n.created_us, json.dumps(n.to_dict())),
            )
            conn.execute(
                f"DELETE FROM inbox WHERE user_id = ? AND id IN "
                f"(SELECT id FROM inbox WHERE user_id = ? {_NEWEST} LIMIT -1 OFFSET ?)",
                (n.user_id, n.user_id, max(0, limit)),
            )

    def items_of(self, user: str, limit: int, unread_only: bool) -> list[Notification]:
        """The user's notifications, newest first."""
        unread = "AND read = 0" if unread_only else ""
        rows = self.store.execute(
            f"SELECT data, read FROM inbox WHERE user_id = ? {unread} {_NEWEST} LIMIT ?", (user, limit)
        )
        return [Notification.from_dict(json.loads(data), read=bool(read)) for data, read in rows]

    def mark_read(self, user: str, ids: list[str] | None) -> int:
        """Mark ``ids`` (None: all) read; returns how many were unread."""
        if ids is None:
            rows = self.store.execute("UPDATE inbox SET read = 1 WHERE user_id = ? AND read = 0 RETURNING id", (user,))
            return len(rows)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        rows = self.store.execute(
            f"UPDATE inbox SET read = 1 WHERE user_id = ? AND read = 0 AND id IN ({marks}) RETURNING id", (user, *ids)
        )
        return len(rows)

    def unread_count(self, user: str) -> int:
        """How many of the user's notifications are unread."""
        return int(self.store.execute("SELECT COUNT(*) FROM inbox WHERE user_id = ? AND read = 0", (user,))[0][0])
