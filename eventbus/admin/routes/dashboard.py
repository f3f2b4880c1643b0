"""The dashboard at ``/``: server-rendered pages over the control plane, signed in with the admin token.

Pages read the control plane once per request; the queue table refreshes itself from
``/dashboard/stats.json`` every 1.5 s. Buttons are POST forms carrying the session's CSRF token;
each is one control-plane call followed by a redirect back (post/redirect/get).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from eventbus.admin.plane import app_control_plane
from eventbus.admin.routes.topics import topic_catalog
from eventbus.admin.session import COOKIE, SESSION_TTL_S, csrf_ok, csrf_token, new_session, session_of, token_matches
from eventbus.control import ControlPlane, JobRecord, JobState
from eventbus.errors import ControlPlaneUnavailable, EventBusError, InvalidJobState, NotFound

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
LOGIN_FAILURE_DELAY_S = 0.5  # slows token guessing; the token itself should be long and random
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
RECENT_STATES = (JobState.WAITING, JobState.DELAYED, JobState.ACTIVE, JobState.RETRYING, JobState.COMPLETED,
                 JobState.DEAD)  # fmt: skip
NOTICES = {
    "paused": "Queue {0} paused: workers start none of its jobs.",
    "resumed": "Queue {0} resumed.",
    "requeued": "Dead letter {0} requeued.",
    "purged": "Dead letter {0} purged.",
    "retried": "Job {0} retried.",
    "removed": "Job {0} removed.",
}


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["when"] = _when
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)


def _page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    session = session_of(request)
    notice = request.query_params.get("notice", "")
    context.setdefault(
        "notice", NOTICES[notice].format(request.query_params.get("id", "")) if notice in NOTICES else ""
    )
    context |= {"csrf": csrf_token(session, request) if session else "", "signed_in": session is not None}
    return templates.TemplateResponse(request, name, context, status_code=status, headers=SECURITY_HEADERS)


def _login_redirect(request: Request) -> Response:
    return RedirectResponse("/login?" + urlencode({"next": request.url.path}), status_code=303)


def _safe_next(value: str | None) -> str:
    """Only a local path: never redirect a signed-in user to another site."""
    return value if value and value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


def _error_page(request: Request, exc: EventBusError) -> Response:
    """A control-plane error as a page, with the status the API would answer."""
    if isinstance(exc, NotFound):
        return _page(request, "error.html", 404, title="Not found", message=str(exc))
    if isinstance(exc, ControlPlaneUnavailable):
        return _page(request, "error.html", 503, title="Control plane unavailable", message=str(exc))
    if isinstance(exc, InvalidJobState):
        return _page(request, "error.html", 409, title="Not done", message=str(exc))
    return _page(request, "error.html", 400, title="Cannot do that", message=str(exc))


async def _render(request: Request, name: str, build: Callable[..., dict[str, Any]], *args: Any) -> Response:
    """Sign-in check, then ``build(cp, *args)`` in a thread for the template's context."""
    if session_of(request) is None:
        return _login_redirect(request)
    try:
        context = await run_in_threadpool(build, app_control_plane(request.app), *args)
    except EventBusError as exc:
        return _error_page(request, exc)
    return _page(request, name, **context)


async def _act(request: Request, action: Callable[..., object], *args: Any, notice: str, subject: str) -> Response:
    """A button: signed in, CSRF token of this session, then one control-plane call and a redirect back."""
    session = session_of(request)
    if session is None:
        return _login_redirect(request)
    form = await _form(request)
    if not csrf_ok(request, session, form.get("csrf", "")):
        return _page(request, "error.html", 403, title="Form expired", message="reload the page and try again")
    try:
        await run_in_threadpool(action, app_control_plane(request.app), *args)
    except EventBusError as exc:
        return _error_page(request, exc)
    target = _safe_next(form.get("next"))
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{urlencode({'notice': notice, 'id': subject})}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form body (first value of each field)."""
    return {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}


# -- sign in ------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request) -> Response:
    return _page(request, "login.html", next=_safe_next(request.query_params.get("next")), error="")


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    target = _safe_next(form.get("next"))
    if not token_matches(request, form.get("token", "")):
        await asyncio.sleep(LOGIN_FAILURE_DELAY_S)
        error = "That is not the admin token. Paste the value of EVENTBUS_ADMIN_TOKEN."
        return _page(request, "login.html", 401, next=target, error=error)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, new_session(request), max_age=SESSION_TTL_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    body = files("eventbus.admin").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


# -- pages --------------------------------------------------------------------------------------


@router.get("/dashboard/stats.json")
async def stats_json(request: Request) -> Response:
    """What the queue table polls: ControlPlane.stats() plus live workers."""
    if session_of(request) is None:
        return JSONResponse({"error": "unauthorized", "detail": "sign in again at /login"}, status_code=401)

    def read(cp: ControlPlane) -> dict[str, Any]:
        return {**cp.stats().to_dict(), "workers": len(cp.workers())}

    return JSONResponse(
        await run_in_threadpool(read, app_control_plane(request.app)), headers={"Cache-Control": "no-store"}
    )


def _overview(cp: ControlPlane) -> dict[str, Any]:
    recent: list[JobRecord] = []
    if "events" in cp.queues():
        for state in RECENT_STATES:
            recent.extend(cp.list_jobs("events", state, limit=20).items)
    recent.sort(key=lambda j: j.enqueued_at_ms or 0, reverse=True)
    return {"stats": cp.stats(), "health": cp.health(), "workers": cp.workers(), "recent": recent[:20]}


@router.get("/")
async def overview(request: Request) -> Response:
    return await _render(request, "overview.html", _overview)


def _queue(cp: ControlPlane, queue: str, state: str, cursor: str | None) -> dict[str, Any]:
    page = cp.list_jobs(queue, state, limit=50, cursor=cursor)
    return {"queue": cp.queue_stats(queue), "state": state, "states": [s.value for s in JobState], "page": page}


@router.get("/queues/{queue}")
async def queue_page(request: Request, queue: str, state: str = "waiting", cursor: str | None = None) -> Response:
    return await _render(request, "queue.html", _queue, queue, state, cursor)


def _job(cp: ControlPlane, job_id: str) -> dict[str, Any]:
    return {"job": cp.get_job(job_id)}


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    return await _render(request, "job.html", _job, job_id)


def _dead_letters(cp: ControlPlane, queue: str | None, subscription: str | None, cursor: str | None) -> dict[str, Any]:
    page = cp.dead_letters(queue, subscription, limit=50, cursor=cursor)
    return {"page": page, "queue": queue or "", "subscription": subscription or "", "queues": cp.queues()}


@router.get("/dead-letters")
async def dead_letters_page(
    request: Request, queue: str | None = None, subscription: str | None = None, cursor: str | None = None
) -> Response:
    return await _render(request, "dead_letters.html", _dead_letters, queue or None, subscription or None, cursor)


def _topics(cp: ControlPlane, request: Request) -> dict[str, Any]:
    counts = {t.topic: t for t in cp.stats().topics}
    return {"catalog": topic_catalog(request.app.state.settings), "counts": counts}


@router.get("/topics")
async def topics_page(request: Request) -> Response:
    return await _render(request, "topics.html", _topics, request)


# -- buttons ------------------------------------------------------------------------------------


@router.post("/queues/{queue}/pause")
async def pause(request: Request, queue: str) -> Response:
    return await _act(request, ControlPlane.pause, queue, notice="paused", subject=queue)


@router.post("/queues/{queue}/resume")
async def resume(request: Request, queue: str) -> Response:
    return await _act(request, ControlPlane.resume, queue, notice="resumed", subject=queue)


@router.post("/dead-letters/{job_id}/requeue")
async def requeue(request: Request, job_id: str) -> Response:
    def one(cp: ControlPlane, job_id: str) -> None:
        cp.get_dead_letter(job_id)
        cp.requeue_dead_letters([job_id])

    return await _act(request, one, job_id, notice="requeued", subject=job_id)


@router.post("/dead-letters/{job_id}/purge")
async def purge(request: Request, job_id: str) -> Response:
    def one(cp: ControlPlane, job_id: str) -> None:
        cp.get_dead_letter(job_id)
        cp.purge_dead_letters([job_id])

    return await _act(request, one, job_id, notice="purged", subject=job_id)


@router.post("/jobs/{job_id}/retry")
async def retry(request: Request, job_id: str) -> Response:
    return await _act(request, ControlPlane.retry_job, job_id, notice="retried", subject=job_id)


@router.post("/jobs/{job_id}/remove")
async def remove(request: Request, job_id: str) -> Response:
    return await _act(request, ControlPlane.remove_job, job_id, notice="removed", subject=job_id)
