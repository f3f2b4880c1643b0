"""Health: healthy / degraded / unhealthy, with one reason per failed check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventbus.clock import now_ms
from eventbus.reports import HealthCheck, HealthReport, HealthStatus, WorkerInfo

if TYPE_CHECKING:
    from eventbus.control import ControlPlane

WORKER_TTL_S = 15.0


def live_workers(cp: ControlPlane) -> list[WorkerInfo]:
    """Worker processes with a heartbeat in the last 15 s."""
    return cp.store.live_workers(now_ms() - int(WORKER_TTL_S * 1000))


def check(cp: ControlPlane, *, max_failed: int | None = None, max_waiting: int | None = None) -> HealthReport:
    """Broker reachable (1 s) and its own checks, dead letters and waiting jobs under thresholds, a live worker."""
    max_failed = cp.settings.health_max_failed if max_failed is None else max_failed
    max_waiting = cp.settings.health_max_waiting if max_waiting is None else max_waiting
    checks = cp.store.probe()
    if not checks[0].ok:
        return HealthReport(HealthStatus.UNHEALTHY, [checks[0].detail], checks[:1])
    stats = cp.stats()
    dead = {q.queue: q.dead for q in stats.queues if q.dead}
    total_dead = sum(dead.values())
    checks.append(
        HealthCheck(
            "failed",
            total_dead <= max_failed,
            f"{total_dead} failed jobs in dead letters (threshold {max_failed})"
            + (f": {_per_queue(dead)}; see `eventbus dlq list`" if total_dead > max_failed else ""),
        )
    )
    waiting = {q.queue: q.waiting for q in stats.queues if q.waiting}
    total_waiting = sum(waiting.values())
    checks.append(
        HealthCheck(
            "waiting",
            total_waiting <= max_waiting,
            f"{total_waiting} waiting jobs (threshold {max_waiting})"
            + (f": {_per_queue(waiting)}; add workers or check paused queues" if total_waiting > max_waiting else ""),
        )
    )
    workers = live_workers(cp)
    checks.append(
        HealthCheck(
            "workers",
            bool(workers),
            f"{len(workers)} live workers"
            if workers
            else f"no live worker (no heartbeat in {WORKER_TTL_S:.0f} s); start one: eventbus worker",
        )
    )
    outbox = stats.outbox
    if outbox.get("enabled"):
        depth = int(outbox.get("depth", 0))
        checks.append(
            HealthCheck(
                "outbox",
                depth == 0,
                "outbox empty"
                if depth == 0
                else f"{depth} messages wait in the outbox {outbox['path']} (oldest {outbox['oldest_age_s']:.0f} s): "
                "the broker was unreachable; workers relay them when it answers, or run `eventbus outbox relay`",
            )
        )
    reasons = [c.detail for c in checks if not c.ok]
    return HealthReport(HealthStatus.DEGRADED if reasons else HealthStatus.HEALTHY, reasons, checks)


def _per_queue(counts: dict[str, int]) -> str:
    return ", ".join(f"{q} {n}" for q, n in sorted(counts.items(), key=lambda kv: -kv[1]))
