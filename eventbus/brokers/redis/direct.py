"""Round trips without redis-py's per-command layers, for the hot paths (publish, fetch, acks).

redis-py's client wraps every command in layers (pool checkout, the retry wrapper, observability
hooks, response callbacks) that cost about as much as a loopback round trip itself. A
:class:`Direct` keeps its own few connections, made with the client's settings (address,
credentials, TLS, timeouts), and writes packed commands on them. The error rules are the client's:
a dropped connection is retried once at once, a timeout is not (see ``make_client``), and a script
Redis forgot (after a restart) is loaded again and run once more.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from hiredis import pack_command  # in C; redis-py's packer encodes each argument in Python first


class Direct:
    """Commands and pipelines on connections made with ``client``'s pool settings.

    Idle connections wait on a stack (``list.pop`` and ``append`` are atomic: no lock on the hot
    path), at most ``max_idle`` of them; they are closed by :meth:`close` or when this object goes.
    """

    def __init__(self, client: redis.Redis, *, max_idle: int = 32) -> None:  # type: ignore[type-arg]
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._max_idle = max_idle
        self._idle: list[Any] = []
        self._pid = os.getpid()
        weakref.finalize(self, _disconnect_all, self._idle)

    def close(self) -> None:
        """Close the idle connections (those in use are closed when they come back)."""
        self._max_idle = 0
        _disconnect_all(self._idle)

    def _take(self) -> Any:
        if self._pid != os.getpid():  # a forked child never uses its parent's sockets
            self._idle.clear()
            self._pid = os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            return self._connection_class(**self._connection_kwargs)

    def _give(self, conn: Any) -> None:
        if len(self._idle) < self._max_idle and self._pid == os.getpid():
            self._idle.append(conn)
        else:
            conn.disconnect()

    def call(self, *args: Any, resend: bool = True) -> Any:
        """One command; its reply (a ResponseError reply is raised)."""
        return self.pipeline([args], resend=resend)[0]

    def pipeline(self, commands: Sequence[Sequence[Any]], *, resend: bool = True) -> list[Any]:
        """Several commands in one round trip; their replies in order.

        The first error reply is raised after every reply was read, so the connection stays usable.
        A dropped connection sends the commands once more, unless ``resend`` is False: commands that
        may have run already and whose reply matters (a take) must not run twice.
        """
        conn = self._take()
        try:
            packed = [b"".join(pack_command(tuple(command)) for command in commands)]
            try:
                conn.send_packed_command(packed)
                return _replies(conn, len(commands))
            except redis.ConnectionError:  # a dropped connection: once more on a new one, like the client
                conn.disconnect()
                if not resend:
                    raise
                conn.send_packed_command(packed)
                return _replies(conn, len(commands))
        except redis.ResponseError:
            raise  # every reply was read: the connection is in step
        except BaseException:
            conn.disconnect()  # a timeout or an interrupt may leave a reply unread
            raise
        finally:
            self._give(conn)

    def evalsha(self, script: Any, *args: Any, keys: int = 0, resend: bool = True) -> Any:
        """Run a registered ``script`` (redis-py ``Script``); the first ``keys`` of ``args`` are its KEYS.

        Loads the script first if Redis forgot it (a restart).
        """
        try:
            return self.call("EVALSHA", script.sha, keys, *args, resend=resend)
        except redis.exceptions.NoScriptError:
            script.sha = self.call("SCRIPT", "LOAD", script.script).decode()
            return self.call("EVALSHA", script.sha, keys, *args, resend=resend)


def _replies(conn: Any, n: int) -> list[Any]:
    replies: list[Any] = []
    error: redis.ResponseError | None = None
    for _ in range(n):
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
            error = error or exc
    if error is not None:
        raise error
    return replies


def _disconnect_all(connections: list[Any]) -> None:
    while connections:
        connections.pop().disconnect()
