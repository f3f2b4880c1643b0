"""A real uvicorn server on a free loopback port, serving ``create_app`` on this test's Redis namespace."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import uvicorn

from eventbus.admin import create_app
from eventbus.settings import Settings, set_settings

TOKEN = "test-admin-token-5f2c"
SECRETS = {"SHOPIFY": "shpss_test_secret", "COINPAYMENTS": "ipn-secret-42", "BILLING_SYSTEM": "generic-secret-7"}


@dataclass
class Server:
    url: str
    settings: Settings

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def start_server(bus: Any, settings: Settings) -> Iterator[Callable[..., Server]]:
    """Start uvicorn in a thread with ``create_app(settings + overrides)``; stopped after the test."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(*, modules: tuple[str, ...] = ("tests.apps.shop",), routers: Any = None, **overrides: Any) -> Server:
        defaults: dict[str, Any] = {
            "admin_token": TOKEN,
            "max_body_bytes": 4096,
            "webhook_secrets": tuple(sorted(SECRETS.items())),
        }
        app_settings = replace(settings, subscriber_modules=modules, **{**defaults, **overrides})
        set_settings(app_settings)
        app = create_app(app_settings, routers=routers)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("uvicorn did not start within 30 s")
            time.sleep(0.02)
        running.append((server, thread))
        return Server(f"http://127.0.0.1:{port}", app_settings)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()
