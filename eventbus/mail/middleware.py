"""Closes the SMTP pool and the asyncio Redis client before the worker's event loop stops."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.asyncio import get_event_loop_thread

from eventbus.mail.dispatch import close_dispatcher
from eventbus.mail.record import record_store
from eventbus.mail.sender import close_pools

logger = logging.getLogger("eventbus.mail")


class SmtpPoolCloser(dramatiq.Middleware):
    """Must come after ``AsyncIO`` in the stack: after-hooks run in reverse, so this runs first."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Called once in-flight jobs finished: QUIT pooled SMTP connections, close the Redis client."""
        thread = get_event_loop_thread()
        if thread is None or not thread.loop.is_running():
            return

        async def close() -> None:
            await close_dispatcher()
            await close_pools()
            await record_store(broker).aclose()

        try:
            thread.run_coroutine(close())
        except Exception:  # shutdown must go on; the server drops the connections anyway
            logger.warning("could not close SMTP connections cleanly", exc_info=True)
