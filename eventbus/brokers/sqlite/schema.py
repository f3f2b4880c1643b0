"""The SQLite broker's tables (component ``broker`` in ``schema_version``).

``messages`` holds waiting, delayed and leased messages of every queue:
  ``visible_at`` is when a row may next be handed out (ms since the epoch): the enqueue time for
  a ready message, the eta for a delayed one, the lease expiry for a leased one (so a row held by
  a dead worker becomes visible again by itself), 0 for a message put back at the head.
  ``rank`` is the priority (0 = critical … 3 = low); a fetch takes the lowest rank first, then
  the lowest ``visible_at``, then the lowest ``id`` (FIFO).
``dead_letters`` holds nacked messages as the worker last saw them (final retries, error, traceback).
``once_keys`` remembers once-only keys until ``expires_at``; ``paused`` lists paused queues;
``queues`` lists every queue a process declared (for operators in other processes).
"""

from __future__ import annotations

COMPONENT = "broker"

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        rank INTEGER NOT NULL,
        visible_at INTEGER NOT NULL,
        eta INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        enqueued_at INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS messages_fetch ON messages (queue, rank, visible_at, id);
    CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id);
    CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        dead_at INTEGER NOT NULL,
        error TEXT,
        data BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (queue, dead_at);
    CREATE TABLE IF NOT EXISTS once_keys (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS once_keys_expiry ON once_keys (expires_at);
    CREATE TABLE IF NOT EXISTS paused (queue TEXT PRIMARY KEY, paused_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS queues (queue TEXT PRIMARY KEY, declared_at INTEGER NOT NULL) WITHOUT ROWID
    """,
]

RANKS = (0, 1, 2, 3)

# Up to :n ready rows of one queue, highest priority first, nothing while the queue is paused: (id, data,
# careful). Careful: a worker held the row before and did not finish it (its lease ran out, or a start mark
# of it is stored; see recovery.py). One indexed range per rank; the outer sort orders at most 4 * :n rows.
FETCH = (
    "SELECT id, data, lease_owner IS NOT NULL OR EXISTS (SELECT 1 FROM message_runs WHERE row_id = m.id) FROM ("
    + " UNION ALL ".join(
        f"SELECT * FROM (SELECT id, rank, visible_at, lease_owner, data FROM messages "
        f"WHERE queue = :queue AND rank = {rank} AND visible_at <= :now ORDER BY visible_at, id LIMIT :n)"
        for rank in RANKS
    )
    + ") AS m WHERE NOT EXISTS (SELECT 1 FROM paused WHERE queue = :queue) ORDER BY rank, visible_at, id LIMIT :n"
)

# When the next row of a queue is (or was) visible: <= now means ready rows wait; NULL while the queue
# is paused or empty. One indexed lookup per rank, so an idle consumer's look at its queue stays cheap.
NEXT_VISIBLE = (
    "SELECT MIN(v) FROM ("
    + " UNION ALL ".join(
        f"SELECT MIN(visible_at) AS v FROM messages WHERE queue = :queue AND rank = {rank}" for rank in RANKS
    )
    + ") WHERE NOT EXISTS (SELECT 1 FROM paused WHERE queue = :queue)"
)

INSERT = (
    "INSERT INTO messages (queue, rank, visible_at, eta, enqueued_at, message_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
)

INSERT_DEAD = "INSERT INTO dead_letters (queue, message_id, dead_at, error, data) VALUES (?, ?, ?, ?, ?)"

# A once-key is taken when new or expired; rowcount 0 means a live duplicate.
TAKE_ONCE = (
    "INSERT INTO once_keys (key, expires_at) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at WHERE once_keys.expires_at <= ?"
)

PURGE_ONCE = "DELETE FROM once_keys WHERE key IN (SELECT key FROM once_keys WHERE expires_at <= ? LIMIT 1000)"
