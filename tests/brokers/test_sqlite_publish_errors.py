"""A SQLite file locked past the store's patience: PublishError for events, emails and notifications, or the outbox."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import dramatiq
import pytest

import tests.apps.sqlite_recording  # noqa: F401  declares sq.happened in this process
from eventbus import publish_event, send_email
from eventbus.errors import PublishError
from eventbus.notifications import notify
from eventbus.outbox import get_outbox, outbox_depth
from eventbus.settings import get_settings, set_settings


def test_publishing_while_another_process_holds_the_write_lock_raises_publish_error(sqlite_bus):
    # Given a store that waits at most 0.3 s for the write lock, and a writer that holds it
    sqlite_bus.store.lock_timeout_s = 0.3
    blocker = sqlite3.connect(sqlite_bus.path, isolation_level=None, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        # Then each kind of publish fails with the error that names the broker
        with pytest.raises(PublishError, match="could not enqueue"):
            send_email("welcome", "ann@example.com", {"name": "Ann"})
        with pytest.raises(PublishError, match="could not enqueue"):
            notify("u1", "Hello", "there", channels=["inbox"])
        with pytest.raises(PublishError):
            publish_event("sq.happened", {"n": 1})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # And once the lock is gone, sending works again
    assert send_email("welcome", "ann@example.com", {"name": "Ann"}).enqueued


def test_with_the_outbox_a_locked_file_keeps_sends_in_the_outbox_until_the_lock_is_gone(sqlite_bus, tmp_path):
    # Given the outbox on, and a writer holding the bus file's write lock past the store's patience
    set_settings(replace(get_settings(), outbox_path=str(tmp_path / "outbox.db")))
    sqlite_bus.store.lock_timeout_s = 0.3
    blocker = sqlite3.connect(sqlite_bus.path, isolation_level=None, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        # When each kind of send runs
        queued = send_email("welcome", "ann@example.com", {"name": "Ann"}, idempotency_key="welcome-ann")
        note = notify("u1", "Hello", "there", channels=["inbox"])
        event = publish_event("sq.happened", {"n": 1})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Then they returned normally, kept in the outbox
    assert queued.outboxed and note.outboxed and outbox_depth() == 3
    # And once the lock is gone the relay writes each once, in order
    box = get_outbox()
    assert box is not None and box.drain(sqlite_bus, dedup_ttl_s=3600) == 3
    rows = sqlite_bus.store.execute("SELECT data FROM messages ORDER BY id")
    got = [dramatiq.Message.decode(row[0]) for row in rows]
    assert [m.queue_name for m in got] == ["email", "notifications", "events"]
    assert got[0].kwargs["key"] == "welcome-ann" and got[2].message_id == event.id
