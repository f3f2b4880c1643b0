"""The app's one :class:`ControlPlane`, shared by the control routes, the dashboard and /metrics."""

from __future__ import annotations

from fastapi import FastAPI, Request

from eventbus.broker import get_broker
from eventbus.control import ControlPlane


def app_control_plane(app: FastAPI) -> ControlPlane:
    """Built on first use over the process broker; ControlPlaneUnavailable (503) when it keeps no ledger."""
    plane: ControlPlane | None = getattr(app.state, "control_plane", None)
    if plane is None or plane.broker is not get_broker():
        plane = ControlPlane(get_broker(), app.state.settings)
        app.state.control_plane = plane
    return plane


def control_plane(request: Request) -> ControlPlane:
    """FastAPI dependency: the control plane of the app serving ``request``."""
    return app_control_plane(request.app)
