"""Subscriptions: ``@subscribe`` registers a function for a topic pattern."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eventbus.errors import SubscriptionError
from eventbus.event import Event
from eventbus.priority import Priority
from eventbus.topic import validate_name

F = TypeVar("F", bound=Callable[[Event], Any])

_OPTIONS = frozenset({"queue", "priority", "max_retries", "min_backoff_ms", "max_backoff_ms", "name"})


@dataclass(frozen=True)
class Subscription:
    """One subscriber function bound to a topic pattern, with its own queue and retry policy.

    ``None`` for queue or retry options means "the settings' default when the delivery is made".
    """

    name: str
    pattern: str
    fn: Callable[[Event], Any]
    queue: str | None = None
    priority: Priority = Priority.NORMAL
    max_retries: int | None = None
    min_backoff_ms: int | None = None
    max_backoff_ms: int | None = None

    def matches(self, topic: str) -> bool:
        """True if ``topic`` falls under this subscription's pattern."""
        return pattern_matches(self.pattern, topic)


def pattern_matches(pattern: str, topic: str) -> bool:
    """``model.*`` matches every topic below ``model``; ``*`` matches all; otherwise names are equal."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return topic.startswith(pattern[:-1])
    return pattern == topic


_subscriptions: dict[str, Subscription] = {}


def subscribe(pattern: str, **options: Any) -> Callable[[F], F]:
    """Register the decorated function for ``pattern``; returns it unchanged.

    Options: queue, priority, max_retries, min_backoff_ms, max_backoff_ms, name.
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise SubscriptionError(
            f"@subscribe got unknown option {unknown[0]!r}; valid options are {', '.join(sorted(_OPTIONS))}"
        )
    _validate_pattern(pattern)
    queue = options.get("queue")
    if queue is not None:
        _validate_queue(queue)
    priority = Priority.parse(options.get("priority"), Priority.NORMAL)
    for key in ("max_retries", "min_backoff_ms", "max_backoff_ms"):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise SubscriptionError(f"@subscribe option {key}={value!r} must be a whole number >= 0")

    def register(fn: F) -> F:
        if not callable(fn) or inspect.iscoroutinefunction(fn):
            raise SubscriptionError(f"@subscribe needs a plain function taking an Event, got {fn!r}")
        name = options.get("name") or f"{_module_name(fn)}.{fn.__qualname__}"
        existing = _subscriptions.get(name)
        if existing is not None and existing.fn is not fn and _origin(existing.fn) != _origin(fn):
            raise SubscriptionError(
                f"subscription name {name!r} is already used by {_origin(existing.fn)}; pass name= to tell them apart"
            )
        _subscriptions[name] = Subscription(
            name=name,
            pattern=pattern,
            fn=fn,
            queue=queue,
            priority=priority,
            max_retries=options.get("max_retries"),
            min_backoff_ms=options.get("min_backoff_ms"),
            max_backoff_ms=options.get("max_backoff_ms"),
        )
        return fn

    return register


def subscriptions_for(topic: str) -> list[Subscription]:
    """Every subscription whose pattern matches ``topic``, in name order."""
    return [s for name, s in sorted(_subscriptions.items()) if s.matches(topic)]


def all_subscriptions() -> list[Subscription]:
    """Every registered subscription, in name order."""
    return [_subscriptions[name] for name in sorted(_subscriptions)]


def get_subscription(name: str) -> Subscription | None:
    """The subscription registered under ``name`` in this process, if any."""
    return _subscriptions.get(name)


def unsubscribe(name: str) -> None:
    """Forget a subscription (tests and hot reload)."""
    _subscriptions.pop(name, None)


def _validate_pattern(pattern: str) -> None:
    if pattern == "*":
        return
    base = pattern[:-2] if pattern.endswith(".*") else pattern
    try:
        validate_name(base, what="subscription pattern")
    except Exception:
        raise SubscriptionError(
            f"invalid subscription pattern {pattern!r}: use a topic name ('vote.created') "
            "or a prefix ending in a wildcard ('model.*')"
        ) from None


def _validate_queue(queue: object) -> None:
    if not isinstance(queue, str) or not validate_queue_name(queue):
        raise SubscriptionError(f"invalid queue name {queue!r}: use letters, digits, '_' and '-' (e.g. 'email')")


def validate_queue_name(queue: str) -> bool:
    """Queue names are one segment, so per-priority and delay suffixes never collide."""
    return bool(queue) and queue[0].isalpha() and all(c.isalnum() or c in "_-" for c in queue)


def _module_name(fn: Callable[..., Any]) -> str:
    # The default subscribers ship inside the package (eventbus.subscribers) but keep the names, and so the
    # delivery ids, they had as the top-level ``subscribers`` package.
    module: str = fn.__module__
    return module.removeprefix("eventbus.") if module.startswith("eventbus.subscribers.") else module


def _origin(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)
