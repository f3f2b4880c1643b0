"""``GET /metrics``: Prometheus text format, read from the broker at scrape time (see eventbus.metrics)."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from eventbus.admin.plane import app_control_plane
from eventbus.admin.responses import errors
from eventbus.broker import describe, get_broker
from eventbus.errors import PublishError
from eventbus.metrics import render_metrics

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(503)},
    summary="Prometheus metrics: ControlPlane.stats() per queue and topic, queue depths by priority, live workers",
)
async def metrics(request: Request) -> Response:
    broker = get_broker()
    plane = app_control_plane(request.app)  # not Redis: ControlPlaneUnavailable, 503 naming the fix
    try:
        body = await run_in_threadpool(render_metrics, plane, request.app.state.settings)
    except redis.RedisError as exc:
        raise PublishError(f"cannot read metrics from {describe(broker)}: {exc}; is Redis running?") from None
    return Response(body, media_type=CONTENT_TYPE_LATEST)
