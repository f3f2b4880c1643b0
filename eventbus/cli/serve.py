"""``eventbus serve``: the admin API, publish endpoint, webhooks and /metrics over HTTP (uvicorn)."""

from __future__ import annotations

import ipaddress
import logging

import click

from eventbus.broker import describe, get_broker
from eventbus.cli.base import cli
from eventbus.errors import ConfigError
from eventbus.settings import get_settings

logger = logging.getLogger("eventbus")


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--insecure-dev", is_flag=True, help="Allow running without EVENTBUS_ADMIN_TOKEN (loopback addresses only)."
)
def serve(host: str, port: int, insecure_dev: bool) -> None:
    """Serve the admin API (/api), webhooks (/webhooks/{source}), /metrics and /openapi.json."""
    settings = get_settings()
    if insecure_dev and not is_loopback(host):
        raise ConfigError(f"--insecure-dev only binds loopback (127.0.0.1, ::1, localhost), not {host!r}")
    if not settings.admin_token and not insecure_dev:
        raise ConfigError(
            "EVENTBUS_ADMIN_TOKEN is not set; set it to a long random string, or pass --insecure-dev (loopback only)"
        )
    import uvicorn

    from eventbus.admin import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, insecure_dev=insecure_dev)
    logger.info("eventbus serve: broker %s; http://%s:%d", describe(get_broker()), host, port)
    if not settings.admin_token:
        logger.warning("eventbus serve: --insecure-dev without EVENTBUS_ADMIN_TOKEN: /api is open to this host")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
