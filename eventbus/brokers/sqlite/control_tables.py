"""The control plane's tables in the SQLite broker's file (component ``control`` in ``schema_version``).

``ctl_jobs`` is the job ledger: one row per job id with its state, the sequence number of the write
that set it (see :mod:`eventbus.ledger`), when it entered that state (``updated_at``, ms), when
the record expires (NULL: never), the other fields as JSON and the state history.
``ctl_topic_stats`` and ``ctl_processed`` (5 s buckets) are counters; ``ctl_events`` keeps
published events for replay; ``ctl_workers`` holds heartbeats; ``ctl_subscriptions`` the
subscriptions workers run; ``ctl_locks`` locks that expire by themselves.
Queues, paused queues and dead letters are the broker's own tables (see ``schema``).
"""

from __future__ import annotations

COMPONENT = "control"

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS ctl_jobs (
        id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        state TEXT NOT NULL,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        expires_at INTEGER,
        fields TEXT NOT NULL,
        history TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS ctl_jobs_by_state ON ctl_jobs (queue, state, updated_at);
    CREATE TABLE IF NOT EXISTS ctl_topic_stats (
        topic TEXT NOT NULL, name TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (topic, name)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ctl_processed (
        queue TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (queue, bucket)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ctl_events (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS ctl_events_expiry ON ctl_events (expires_at);
    CREATE TABLE IF NOT EXISTS ctl_workers (name TEXT PRIMARY KEY, last_seen INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ctl_subscriptions (name TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ctl_locks (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ctl_dead_letters_message_id ON dead_letters (message_id)
    """,
]

# A record past its retention reads as absent until the upkeep deletes it.
LIVE = "(expires_at IS NULL OR expires_at > :now)"
