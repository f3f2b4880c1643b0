"""Pinning a worker process to one CPU of its own (``EVENTBUS_PIN_WORKERS=1``).

A worker process runs its Python on one core at a time (the GIL). Left to the scheduler, its
threads run on every core and hand the GIL to each other across cores, which costs futex wake-ups
and cold caches; pinned, a busy process runs each job in less CPU time (``scripts/bench --only
ledger`` reports pinned and unpinned drains side by side). Each worker process claims the first CPU no other
eventbus worker on the host holds (those of ``dramatiq eventbus.workers -p N`` and of separately
started workers alike): the claim is an abstract Unix socket named after the CPU, which the kernel
releases when the process exits. With more processes than CPUs the rest stay unpinned (and say so
in the log).

Off by default: a pinned process cannot move off a core that something else keeps busy, so pin
only where the workers have the cores to themselves.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger("eventbus")

_pinned: tuple[socket.socket, int] | None = None  # the claim (held for the life of the process) and its CPU


def pin_worker_process() -> int | None:
    """Pin every thread of this process to one CPU no other worker holds; returns it (None: not pinned)."""
    global _pinned
    if not hasattr(os, "sched_setaffinity") or not hasattr(socket, "AF_UNIX"):
        logger.warning("EVENTBUS_PIN_WORKERS: this platform cannot pin a process to a CPU; not pinned")
        return None
    if _pinned is not None:
        return _pinned[1]
    allowed = sorted(os.sched_getaffinity(0))
    for cpu in allowed:
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind(f"\0eventbus-cpu-{cpu}")
        except OSError:  # another worker holds this CPU
            claim.close()
            continue
        _pinned = (claim, cpu)
        for task in os.listdir("/proc/self/task"):  # threads started before this call too
            os.sched_setaffinity(int(task), {cpu})
        logger.info("eventbus worker pid %d pinned to CPU %d", os.getpid(), cpu)
        return cpu
    logger.warning("EVENTBUS_PIN_WORKERS: all %d CPUs are held by other workers; pid %d not pinned",
                   len(allowed), os.getpid())  # fmt: skip
    return None
