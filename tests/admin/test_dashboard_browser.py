"""The dashboard in a real Chromium (issue 6, acceptance 1): sign in, requeue a dead letter, pause and resume.

A real uvicorn server, a real worker process on this test's Redis namespace, and the subscriber
``broken`` of tests.apps.control, which fails until the key ``<ns>:test:fixed`` exists. Chromium is the
system one (/usr/bin/chromium); Playwright never downloads a browser. With CI=true a missing Chromium
or Playwright fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

import tests.apps.control  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_many
from eventbus.control import ControlPlane
from eventbus.delivery import delivery_id
from tests.admin.conftest import TOKEN
from tests.conftest import ROOT, need, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.control"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The picture in docs/http.md; the test writes it there only when asked (EVENTBUS_UPDATE_SCREENSHOT=1).
SCREENSHOT = ROOT / "docs" / "dashboard.png"


def test_sign_in_requeue_a_dead_letter_pause_and_resume_in_chromium(
    start_server, start_worker, bus, settings, redis_client, namespace, tmp_path
):
    need("Playwright (pip install playwright)", importlib.util.find_spec("playwright") is not None)
    need(f"Chromium at {CHROMIUM}", CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK))
    from playwright.sync_api import expect, sync_playwright

    # Given the server, a worker, and three deliveries to `broken` that ran out of attempts
    server = start_server(modules=(APP,))
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    events = publish_many([("ctl.happened", {"n": n}) for n in range(3)])
    wait_for(lambda: cp.stats().queue("ctl_dead").dead >= 3, 60, worker)
    job_id = delivery_id(events[0].id, "broken")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True, timeout=30_000)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(20_000)
            # When an operator opens the dashboard, they are sent to sign in; a wrong token is refused (401)
            page.goto(server.url + "/")
            expect(page).to_have_url(server.url + "/login?next=%2F")
            page.fill("#token", "not-the-token")
            with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as answer:
                page.click("button[type=submit]")
            assert answer.value.status == 401
            expect(page.get_by_test_id("login-error")).to_contain_text("not the admin token")
            # and the right token signs in with an HttpOnly, SameSite=Strict session cookie
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            expect(page).to_have_url(server.url + "/")
            cookie = next(c for c in page.context.cookies() if c["name"] == "eventbus_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert TOKEN not in cookie["value"]

            # Then the dead letter is listed, with its traceback
            page.click("nav >> text=Dead letters")
            row = page.locator(f'tr[data-dead-letter="{job_id}"]')
            expect(row).to_contain_text("broken cannot handle")
            # When the subscriber is fixed and the operator clicks Requeue
            redis_client.set(f"{namespace}:test:fixed", 1)
            page.get_by_test_id(f"requeue-{job_id}").click()
            expect(page.get_by_test_id("notice")).to_contain_text("requeued")
            expect(row).to_have_count(0)
            # Then its job page, which reloads itself until the job finishes, shows it completed
            page.goto(f"{server.url}/jobs/{job_id}")
            expect(page.get_by_test_id("job-state")).to_have_text("completed", timeout=30_000)
            assert cp.get_job(job_id).state == "completed"

            # When the operator pauses queue ctl from the overview
            page.goto(server.url + "/")
            page.get_by_test_id("pause-ctl").click()
            expect(page.get_by_test_id("notice")).to_contain_text("ctl paused")
            # Then the control plane has it paused, and the live table says so
            assert cp.paused() == ["ctl"]
            expect(page.locator('tr[data-queue="ctl"] [data-field=paused]')).to_have_text("paused")
            # and Resume undoes it
            page.get_by_test_id("resume-ctl").click()
            expect(page.get_by_test_id("notice")).to_contain_text("ctl resumed")
            assert cp.paused() == []
            # The live table follows changes made elsewhere (here: the control plane itself)
            cp.pause("ctl_dead")
            expect(page.locator('tr[data-queue="ctl_dead"] [data-field=paused]')).to_have_text("paused")
            cp.resume("ctl_dead")
            expect(page.locator('tr[data-queue="ctl_dead"] [data-field=paused]')).to_have_text("running")
            expect(page.locator('tr[data-queue="ctl_dead"] [data-field=dead]')).to_have_text("2")

            # A look at it all, for the docs
            time.sleep(0.5)
            shot = SCREENSHOT if os.environ.get("EVENTBUS_UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(b"\x89PNG")
        finally:
            browser.close()
