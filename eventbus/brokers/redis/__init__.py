"""The Redis backend: everything eventbus keeps in Redis, one module per store."""

from eventbus.brokers.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
