"""``create_app`` composes routers; an unexpected error is a JSON 500 without internals."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from eventbus.admin import create_app
from eventbus.admin.auth import admin_router
from eventbus.admin.routes import default_routers
from eventbus.errors import ConfigError
from eventbus.settings import Settings

pytestmark = [pytest.mark.redis]

extra = admin_router(tags=["extra"])


@extra.get("/api/boom")
def boom() -> dict[str, str]:
    raise RuntimeError("secret internals: password=hunter2")


def test_an_added_admin_router_is_guarded_and_its_crash_is_a_json_500(start_server, caplog):
    # Given the default routers plus one more built with admin_router
    server = start_server(routers=[*default_routers(), extra])
    with server.client(token=None) as anonymous:
        assert anonymous.get("/api/boom").status_code == 401
    # When its handler raises
    with caplog.at_level(logging.CRITICAL), server.client() as http:
        response = http.get("/api/boom")
    # Then the answer is JSON 500 with no internals
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "unexpected server error; the server log has the details",
    }
    assert "hunter2" not in response.text and "Traceback" not in response.text


def test_create_app_refuses_to_build_without_a_token():
    with pytest.raises(ConfigError, match="EVENTBUS_ADMIN_TOKEN is not set"):
        create_app(replace(Settings(), default_subscribers=False))


def test_settings_read_the_admin_and_webhook_variables_and_hide_secrets():
    settings = Settings.from_env(
        {
            "EVENTBUS_ADMIN_TOKEN": " tok ",
            "EVENTBUS_MAX_BODY_BYTES": "2048",
            "EVENTBUS_WEBHOOK_SECRET_SHOPIFY": "s1",
            "EVENTBUS_WEBHOOK_SECRET_MY_SHOP": "s2",
            "EVENTBUS_WEBHOOK_SECRET_EMPTY": "",
        }
    )
    assert settings.admin_token == "tok" and settings.max_body_bytes == 2048
    assert settings.webhook_secret("shopify") == "s1"
    assert settings.webhook_secret("my-shop") == "s2"
    assert settings.webhook_secret("empty") is None
    assert "tok" not in repr(settings) and "s1" not in repr(settings)
