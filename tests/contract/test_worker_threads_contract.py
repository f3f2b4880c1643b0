"""No thread keeps a stopping worker process alive: every one eventbus or Dramatiq starts is a daemon,
or is joined on shutdown by the code that started it.

The exceptions, and who joins them:

- Dramatiq's ``EventLoopThread`` (the AsyncIO middleware, for async actors) is not a daemon. Dramatiq
  stops its loop and joins it in ``after_worker_shutdown``, without a deadline: an async actor that
  blocks the loop holds the stop until a second SIGTERM exits at once (``PromptStop``).
- ``asyncio.to_thread`` runs a call on the event loop's default executor, whose threads are not
  daemons either. Closing the loop shuts the executor down without waiting; ``concurrent.futures``
  joins its threads at interpreter exit, without a deadline, so a call in progress (SQLite send
  records and mail pacing, each bounded by the store's lock timeout; building the SMTP TLS context;
  ``socket.getfqdn``) finishes before the process exits, or a second SIGTERM ends it at once.
"""

from __future__ import annotations

import ast
import threading
import time

from eventbus import publish_event
from tests.apps import contract as app
from tests.conftest import ROOT, wait_for

JOINED_ON_SHUTDOWN = {"dramatiq.asyncio.EventLoopThread"}


def origin(thread: threading.Thread) -> str:
    """``module.Class`` of a Thread subclass, else the module of the thread's target."""
    cls = type(thread)
    if cls is not threading.Thread:
        return f"{cls.__module__}.{cls.__qualname__}"
    target = getattr(thread, "_target", None)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


def ours(thread: threading.Thread) -> bool:
    return thread is not threading.main_thread() and origin(thread).startswith(("eventbus", "dramatiq"))


def test_every_thread_of_a_booted_worker_is_a_daemon_or_joined_on_shutdown(contract_bus):
    # Given a worker with eventbus's middleware booted on this broker, after it ran a few jobs
    contract_bus.start(threads=2)
    events = [publish_event("contract.happened", {"n": i}) for i in range(3)]
    wait_for(lambda: sum(app.counts().values()) >= 3 * len(events), 30)
    # When we list the threads of the process
    threads = [t for t in threading.enumerate() if ours(t)]
    # Then every one eventbus or Dramatiq started is a daemon, except those joined on shutdown
    assert any(origin(t).startswith("eventbus") for t in threads), [origin(t) for t in threads]
    not_daemons = sorted({origin(t) for t in threads if not t.daemon})
    assert set(not_daemons) <= JOINED_ON_SHUTDOWN, not_daemons
    # ... and those are gone once the worker stops
    joined = [t for t in threads if not t.daemon]
    contract_bus.workers.pop().stop()
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in joined) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [origin(t) for t in joined if t.is_alive()]


def test_every_thread_eventbus_creates_is_a_daemon():
    # Given every threading.Thread(...) call in eventbus/, When we read its arguments, Then it says daemon=True
    not_daemons = []
    for path in sorted((ROOT / "eventbus").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("threading.Thread", "Thread"):
                daemon = next((k.value for k in node.keywords if k.arg == "daemon"), None)
                if not (isinstance(daemon, ast.Constant) and daemon.value is True):
                    not_daemons.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not_daemons == [], f"give these threads daemon=True, or join them with a deadline: {not_daemons}"
