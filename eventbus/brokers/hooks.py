"""Middleware signals sent only to the middleware that implement them.

Dramatiq calls every middleware's hook for every signal (about 16 no-op calls per enqueue, fetch,
ack and process in our stack). The hot paths emit several signals per job, so the bound hooks
that are really overridden are looked up once per signal name and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import MiddlewareError

Hook = Callable[..., Any]


class HookCache:
    """Mix in before a ``dramatiq.Broker`` subclass."""

    middleware: list[dramatiq.Middleware]
    logger: Any

    def _hooks(self, name: str) -> list[tuple[Hook, dramatiq.Middleware]]:
        cache: dict[str, list[tuple[Hook, dramatiq.Middleware]]] = self.__dict__.setdefault("_hook_cache", {})
        found = cache.get(name)
        if found is None:
            base = getattr(dramatiq.Middleware, name, None)
            found = [
                (getattr(m, name), m)
                for m in self.middleware
                if getattr(type(m), name, None) is not base or name in vars(m)
            ]
            cache[name] = found
        return found

    def add_middleware(self, middleware: dramatiq.Middleware, **kwargs: Any) -> None:
        self.__dict__.pop("_hook_cache", None)
        super().add_middleware(middleware, **kwargs)  # type: ignore[misc]

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        name = "before_" + signal
        for hook, middleware in self._hooks(name):
            try:
                hook(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, middleware, exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        name = "after_" + signal
        for hook, middleware in reversed(self._hooks(name)):
            try:
                hook(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, middleware, exc_info=True)
