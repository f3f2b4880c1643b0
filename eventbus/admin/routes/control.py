"""The control plane over HTTP: health, stats, jobs, pause/resume, clean-up and dead letters.

Every handler is one call into :class:`eventbus.control.ControlPlane` (decision 11); typed errors become
JSON answers in ``eventbus.admin.errors`` (NotFound 404, InvalidJobState 409, other errors 400, no Redis 503).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from eventbus.admin.auth import admin_router
from eventbus.admin.plane import app_control_plane, control_plane
from eventbus.admin.responses import errors
from eventbus.control import (
    ControlPlane,
    DeadLetter,
    HealthCheck,
    HealthReport,
    HealthStatus,
    JobRecord,
    JobState,
    QueueStats,
    RequeueResult,
    Stats,
)
from eventbus.errors import ControlPlaneUnavailable

router = admin_router(tags=["control"])
public = APIRouter(tags=["control"])

Plane = Annotated[ControlPlane, Depends(control_plane)]
Queue = Annotated[str, Path(min_length=1, max_length=200, description="A queue name, e.g. 'email'.")]
JobId = Annotated[str, Path(min_length=1, max_length=200, description="A job id (the Dramatiq message id).")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="The next_cursor of the previous page; omit for the newest.")
]


class JobPage(BaseModel):
    items: list[JobRecord]
    next_cursor: str | None = Field(description="Pass back as ?cursor= for the next page; null on the last page.")


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None = Field(description="Pass back as ?cursor= for the next page; null on the last page.")


class QueuePaused(BaseModel):
    queue: str
    paused: bool


class CleanRequest(BaseModel):
    """At least one of ``older_than_s`` and ``keep`` (the schema says so, so generated clients know)."""

    older_than_s: Annotated[float, Field(ge=0, le=10 * 366 * 86_400, allow_inf_nan=False)] | SkipJsonSchema[None] = (
        Field(default=None, description="Remove records older than this many seconds.")
    )
    state: Literal["completed", "failed", "cancelled"] = Field(default="completed", description="Records to remove.")
    keep: Annotated[int, Field(ge=0, le=10_000_000)] | SkipJsonSchema[None] = Field(
        default=None, description="Keep only the newest this many."
    )

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"anyOf": [{"required": ["older_than_s"]}, {"required": ["keep"]}]}
    )

    @model_validator(mode="before")
    @classmethod
    def _one_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and (
            {"older_than_s", "keep"}.isdisjoint(data) or any(data.get(k, 0) is None for k in ("older_than_s", "keep"))
        ):
            raise ValueError("give older_than_s (seconds), keep (newest N to keep), or both; not null")
        if isinstance(data, dict) and any(isinstance(data.get(k), bool) for k in ("older_than_s", "keep")):
            raise ValueError("older_than_s and keep are numbers, not true/false")
        return data


class Cleaned(BaseModel):
    removed: int


class RetriedFailed(BaseModel):
    requeued: list[str] = Field(description="Ids of the dead jobs put back in the queue.")


class Purged(BaseModel):
    purged: int


@public.get(
    "/api/health",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "Unhealthy: the broker is unreachable or not Redis."}},
    summary="Health (no token): healthy / degraded with reasons; 503 when unhealthy",
)
def health(request: Request) -> HealthReport | JSONResponse:
    try:
        report = app_control_plane(request.app).health()
    except ControlPlaneUnavailable as exc:
        report = HealthReport(HealthStatus.UNHEALTHY, [str(exc)], [HealthCheck("broker", False, str(exc))])
    if report.status is HealthStatus.UNHEALTHY:
        return JSONResponse(report.to_dict(), status_code=503)
    return report


@router.get("/api/stats", response_model=Stats, responses=errors(503), summary="Counts of every queue and topic")
def stats(cp: Plane) -> Stats:
    return cp.stats()


@router.get(
    "/api/queues/{queue}/stats",
    response_model=QueueStats,
    responses=errors(404, 422, 503),
    summary="Counts of one queue",
)
def queue_stats(cp: Plane, queue: Queue) -> QueueStats:
    return cp.queue_stats(queue)


@router.get(
    "/api/queues/{queue}/jobs",
    response_model=JobPage,
    responses=errors(400, 404, 422, 503),
    summary="Jobs of a queue in one state, newest first",
)
def list_jobs(
    cp: Plane,
    queue: Queue,
    state: Annotated[JobState, Query()] = JobState.WAITING,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JobPage:
    page = cp.list_jobs(queue, state, limit=limit, cursor=cursor)
    return JobPage(items=page.items, next_cursor=page.next_cursor)


@router.get(
    "/api/jobs/{job_id}", response_model=JobRecord, responses=errors(404, 422, 503), summary="One job, with traceback"
)
def get_job(cp: Plane, job_id: JobId) -> JobRecord:
    return cp.get_job(job_id)


@router.delete(
    "/api/jobs/{job_id}",
    response_model=JobRecord,
    responses=errors(404, 409, 422, 503),
    summary="Remove a waiting, dead or finished job",
)
def remove_job(cp: Plane, job_id: JobId) -> JobRecord:
    return cp.remove_job(job_id)


@router.post(
    "/api/jobs/{job_id}/retry",
    response_model=JobRecord,
    responses=errors(404, 409, 422, 503),
    summary="Run a dead job again (fresh attempts, same id)",
)
def retry_job(cp: Plane, job_id: JobId) -> JobRecord:
    return cp.retry_job(job_id)


@router.post(
    "/api/queues/{queue}/pause",
    response_model=QueuePaused,
    responses=errors(404, 422, 503),
    summary="Pause a queue: workers start none of its jobs (running ones finish)",
)
def pause(cp: Plane, queue: Queue) -> QueuePaused:
    cp.pause(queue)
    return QueuePaused(queue=queue, paused=True)


@router.post(
    "/api/queues/{queue}/resume",
    response_model=QueuePaused,
    responses=errors(404, 422, 503),
    summary="Resume a paused queue",
)
def resume(cp: Plane, queue: Queue) -> QueuePaused:
    cp.resume(queue)
    return QueuePaused(queue=queue, paused=False)


@router.post(
    "/api/queues/{queue}/clean",
    response_model=Cleaned,
    responses=errors(400, 404, 413, 422, 503),
    summary="Remove finished job records by age or beyond the newest N",
    description="Give `older_than_s`, `keep`, or both; `state` is completed (default), failed or cancelled.",
)
def clean(cp: Plane, queue: Queue, body: Annotated[CleanRequest, Body()]) -> Cleaned:
    return Cleaned(removed=cp.clean(queue, older_than_s=body.older_than_s, state=body.state, keep_last=body.keep))


@router.post(
    "/api/queues/{queue}/retry-failed",
    response_model=RetriedFailed,
    responses=errors(404, 422, 503),
    summary="Requeue the dead jobs of a queue, newest first",
)
def retry_failed(
    cp: Plane,
    queue: Queue,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="At most this many.")] = None,
) -> RetriedFailed:
    return RetriedFailed(requeued=cp.retry_failed(queue, limit=limit))


@router.get(
    "/api/dead-letters",
    response_model=DeadLetterPage,
    responses=errors(400, 404, 422, 503),
    summary="Dead letters of one queue, one subscription, or all, newest first",
)
def dead_letters(
    cp: Plane,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    subscription: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DeadLetterPage:
    page = cp.dead_letters(queue, subscription, limit=limit, cursor=cursor)
    return DeadLetterPage(items=page.items, next_cursor=page.next_cursor)


@router.post(
    "/api/dead-letters/{job_id}/requeue",
    response_model=RequeueResult,
    responses=errors(404, 422, 503),
    summary="Put one dead letter back in its queue (same job id, fresh attempts)",
)
def requeue_dead_letter(cp: Plane, job_id: JobId) -> RequeueResult:
    cp.get_dead_letter(job_id)  # DeadLetterNotFound (404) before anything is done
    return cp.requeue_dead_letters([job_id])


@router.delete(
    "/api/dead-letters/{job_id}",
    response_model=Purged,
    responses=errors(404, 422, 503),
    summary="Delete one dead letter (its job record stays, as failed)",
)
def purge_dead_letter(cp: Plane, job_id: JobId) -> Purged:
    cp.get_dead_letter(job_id)  # DeadLetterNotFound (404) before anything is done
    return Purged(purged=cp.purge_dead_letters([job_id]))
