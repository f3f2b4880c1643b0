"""The store surface other features build their tables on: versioned schemas, transactions, URLs."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from eventbus.broker import describe, make_broker
from eventbus.brokers.sqlite.broker import SQLiteBroker, path_from_url
from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.errors import ConfigError
from eventbus.settings import Settings, broker_url_from_env


def test_ensure_schema_applies_each_step_once_and_records_the_version(tmp_path: Path):
    store = SQLiteStore(tmp_path / "s.db")
    steps = ["CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1)"]
    # Given a component at version 1
    assert store.ensure_schema("feature", steps) == 1
    assert store.ensure_schema("feature", steps) == 1  # idempotent: the insert did not run twice
    assert store.execute("SELECT COUNT(*) FROM a") == [(1,)]
    # When a second step is appended, only that step runs
    steps.append("ALTER TABLE a ADD COLUMN y TEXT")
    assert SQLiteStore(tmp_path / "s.db").ensure_schema("feature", steps) == 2
    assert store.schema_version("feature") == 2
    assert store.execute("SELECT x, y FROM a") == [(1, None)]


def test_many_threads_ensuring_the_same_schema_apply_it_once(tmp_path: Path):
    steps = ["CREATE TABLE b (x INTEGER); INSERT INTO b VALUES (1)"]
    stores = [SQLiteStore(tmp_path / "s.db") for _ in range(6)]
    threads = [threading.Thread(target=s.ensure_schema, args=("b", steps)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].execute("SELECT COUNT(*) FROM b") == [(1,)]


def test_a_failing_transaction_writes_nothing(tmp_path: Path):
    store = SQLiteStore(tmp_path / "s.db")
    store.execute("CREATE TABLE c (x INTEGER UNIQUE)")
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as conn:
        conn.execute("INSERT INTO c VALUES (1)")
        conn.execute("INSERT INTO c VALUES (1)")
    assert store.execute("SELECT COUNT(*) FROM c") == [(0,)]
    with store.transaction() as conn:
        conn.execute("INSERT INTO c VALUES (2)")
    assert store.execute("SELECT x FROM c") == [(2,)]


def test_the_file_is_in_wal_mode_and_passes_the_integrity_check(tmp_path: Path):
    broker = SQLiteBroker(tmp_path / "deep" / "folder" / "bus.db")
    assert broker.store.execute("PRAGMA journal_mode") == [("wal",)]
    assert broker.store.integrity_check() == "ok"
    assert broker.store.schema_version("broker") == 1


def test_sqlite_urls_name_relative_and_absolute_files(tmp_path: Path, monkeypatch):
    assert path_from_url("sqlite:///.eventbus/eventbus.db") == (Path(".eventbus/eventbus.db"), {})
    assert path_from_url("sqlite:////var/x.db?lease_s=5") == (Path("/var/x.db"), {"lease_s": "5"})
    for bad in ("sqlite://", "sqlite://host/x.db", "sqlite:///"):
        with pytest.raises(ConfigError, match="sqlite:///relative"):
            path_from_url(bad)
    monkeypatch.chdir(tmp_path)
    broker = make_broker(replace(Settings(), broker_url="sqlite:///sub/bus.db?lease_s=7"))
    assert isinstance(broker, SQLiteBroker) and broker.lease_s == 7
    assert broker.path == tmp_path / "sub" / "bus.db"
    assert f"file={tmp_path / 'sub' / 'bus.db'}" in describe(broker)
    with pytest.raises(ConfigError, match="lease_s"):
        make_broker(replace(Settings(), broker_url="sqlite:///x.db?lease_s=soon"))


def test_the_default_broker_is_the_embedded_file_unless_redis_is_configured(tmp_path: Path, monkeypatch):
    assert broker_url_from_env({}) == "sqlite:///.eventbus/eventbus.db"
    assert Settings().broker_url == "sqlite:///.eventbus/eventbus.db"
    assert broker_url_from_env({"EVENTBUS_SQLITE_PATH": "/srv/bus.db"}) == "sqlite:////srv/bus.db"
    assert broker_url_from_env({"REDIS_URL": "redis://r:6379/1"}) == "redis://r:6379/1"
    assert broker_url_from_env({"REDIS_HOST": "r"}) == "redis://r:6379/0"
    assert broker_url_from_env({"EVENTBUS_BROKER_URL": "sqlite:///a.db", "REDIS_URL": "redis://r"}) == "sqlite:///a.db"
    # And with nothing configured the broker creates its folder in the working directory
    monkeypatch.chdir(tmp_path)
    broker = make_broker(Settings.from_env({}))
    assert isinstance(broker, SQLiteBroker)
    assert (tmp_path / ".eventbus" / "eventbus.db").exists()


def test_a_writer_waiting_behind_another_thread_of_its_process_starts_as_soon_as_that_one_commits(tmp_path: Path):
    store = SQLiteStore(tmp_path / "s.db")
    store.execute("CREATE TABLE g (x INTEGER)")
    delays = []
    for hold_s in (0.05, 0.07, 0.09, 0.11, 0.13):
        # Given a thread holding the write lock for a while
        committed_at: list[float] = []

        def hold(hold_s: float = hold_s, committed_at: list[float] = committed_at) -> None:
            with store.transaction() as conn:
                conn.execute("INSERT INTO g VALUES (1)")
                time.sleep(hold_s)
            committed_at.append(time.monotonic())

        holder = threading.Thread(target=hold)
        holder.start()
        time.sleep(0.01)
        # When a second thread of the same process writes
        with store.transaction() as conn:
            started_at = time.monotonic()
            conn.execute("INSERT INTO g VALUES (2)")
        holder.join()
        delays.append(started_at - committed_at[0])
    # Then it waited on the process's write gate and went in as the lock was released, not at a later
    # poll of SQLite's lock (which comes 3-75 ms late)
    assert sorted(delays)[2] < 0.005, delays
