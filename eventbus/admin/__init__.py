"""The HTTP face of eventbus: admin API, publish endpoint, signed webhooks and /metrics."""

from eventbus.admin.app import create_app

__all__ = ["create_app"]
