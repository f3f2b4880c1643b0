"""The dashboard over real HTTP without a browser: sign-in, session cookie, CSRF, and every page rendering."""

from __future__ import annotations

import re
from contextlib import closing

import httpx
import pytest

import tests.apps.control  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_many
from eventbus.control import ControlPlane
from eventbus.delivery import delivery_id
from tests.admin.conftest import TOKEN, Server
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis]

APP = "tests.apps.control"


def signed_in(server: Server) -> httpx.Client:
    http = httpx.Client(base_url=server.url, timeout=30)
    response = http.post("/login", data={"token": TOKEN, "next": "/"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    return http


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_pages_need_a_session_and_a_wrong_token_is_401_on_the_login_page(server: Server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        # Given no session: pages redirect to sign in, the live data is 401
        assert http.get("/").headers["location"] == "/login?next=%2F"
        assert http.get("/dead-letters").status_code == 303
        assert http.get("/dashboard/stats.json").status_code == 401
        # When a wrong token is posted
        bad = http.post("/login", data={"token": "wrong", "next": "/"})
        # Then the login page answers 401 with the error, and sets no cookie
        assert bad.status_code == 401 and "not the admin token" in bad.text
        assert "set-cookie" not in bad.headers
        # and a forged cookie is no session
        http.cookies.set("eventbus_session", "1700000000.abc.deadbeef")
        assert http.get("/").status_code == 303


def test_the_session_cookie_is_httponly_strict_and_signed(server: Server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
    assert response.headers["location"] == "/"  # never redirected off-site
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert TOKEN.lower() not in cookie


def test_every_page_renders_and_buttons_need_the_csrf_token(start_server, start_worker, bus, settings):
    # Given a dead delivery and a signed-in operator
    server = start_server(modules=(APP,))
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    event = publish_many([("ctl.happened", {"n": 1})])[0]
    wait_for(lambda: cp.stats().queue("ctl_dead").dead >= 1, 60, worker)
    job_id = delivery_id(event.id, "broken")
    with closing(signed_in(server)) as http:
        # Then every page renders
        overview = http.get("/")
        assert overview.status_code == 200 and 'data-queue="ctl_dead"' in overview.text
        assert "default-src 'self'" in overview.headers["content-security-policy"]
        assert job_id in http.get("/dead-letters", params={"queue": "ctl_dead"}).text
        assert "Traceback" in http.get(f"/jobs/{job_id}").text
        assert job_id[:12] in http.get("/queues/ctl_dead", params={"state": "dead"}).text
        assert "ctl.happened" in http.get("/topics").text
        assert http.get("/jobs/nope").status_code == 404
        assert http.get("/queues/nope").status_code == 404
        stats = http.get("/dashboard/stats.json").json()
        assert {q["queue"]: q["dead"] for q in stats["queues"]}["ctl_dead"] == 1
        # When a button is posted without the CSRF token (or with another session's), nothing happens
        assert http.post("/queues/ctl/pause", data={"next": "/"}).status_code == 403
        assert http.post("/queues/ctl/pause", data={"csrf": "0" * 64}).status_code == 403
        assert cp.paused() == []
        # and with it, the queue is paused and the operator is sent back with a notice
        done = http.post("/queues/ctl/pause", data={"csrf": csrf_of(overview.text), "next": "/"})
        assert done.status_code == 303 and done.headers["location"] == "/?notice=paused&id=ctl"
        assert cp.paused() == ["ctl"]
        assert "Queue ctl paused" in http.get(done.headers["location"]).text
        # and purging the dead letter removes it
        purged = http.post(f"/dead-letters/{job_id}/purge", data={"csrf": csrf_of(overview.text)})
        assert purged.status_code == 303
        assert cp.stats().queue("ctl_dead").dead == 0
        assert http.post(f"/dead-letters/{job_id}/purge", data={"csrf": csrf_of(overview.text)}).status_code == 404
        # and a button the job's state does not allow answers 409 on an error page
        wait_for(lambda: cp.get_job(delivery_id(event.id, "ok_a")).state == "completed", 30, worker)
        refused = http.post(f"/jobs/{delivery_id(event.id, 'ok_a')}/retry", data={"csrf": csrf_of(overview.text)})
        assert refused.status_code == 409 and "only dead" in refused.text
        # and signing out ends the session
        http.post("/logout")
        assert http.get("/").status_code == 303
