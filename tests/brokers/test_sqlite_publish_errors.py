"""A SQLite file locked past the store's patience gives callers PublishError, for events, emails and notifications."""

from __future__ import annotations

import sqlite3

import pytest

import tests.apps.sqlite_recording  # noqa: F401  declares sq.happened in this process
from eventbus import publish_event, send_email
from eventbus.errors import PublishError
from eventbus.notifications import notify


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
