"""The embedded SQLite backend: everything eventbus keeps in one SQLite file, one module per store."""

from eventbus.brokers.sqlite.broker import SQLiteBroker

__all__ = ["SQLiteBroker"]
