"""The Runtime page: liveness and readiness of every supervised unit, with a restart
button for admins (the same restart as ``POST /api/connectors/{id}/restart``)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from ...kernel.errors import JackfieldError
from ..render import flash, redirect, render
from ..session import UiPrincipal, ui_router
from .connectors import app_of, error_text

router = ui_router()

#: badge styles of app.css per state: connected (green), error (red), default (amber),
#: enabled (blue), disabled (grey)
TONES = {
    "running": "connected",
    "ready": "connected",
    "starting": "enabled",
    "restarting": "enabled",
    "crashed": "default",
    "degraded": "default",
    "failed": "error",
    "auth_failed": "error",
    "missing_credential": "error",
    "misconfigured": "error",
    "unreachable": "error",
    "stopped": "disabled",
}


@router.get("/runtime")
def runtime_page(request: Request, who: UiPrincipal) -> HTMLResponse:
    jf = app_of(request)
    return render(request, "runtime.html", units=jf.runtime.units.list(who), tones=TONES)


@router.post("/runtime/{connector_id}/restart")
def runtime_restart(request: Request, who: UiPrincipal, connector_id: str) -> Response:
    jf = app_of(request)
    try:
        unit = jf.runtime.restart(who, connector_id)
    except JackfieldError as exc:
        response = redirect("/runtime")
        flash(request, response, error_text(exc, who), "error")
        return response
    response = redirect("/runtime")
    name = unit.get("connector_name") or connector_id
    flash(request, response, f"Restarting “{name}”.")
    return response
