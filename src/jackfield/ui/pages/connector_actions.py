"""Actions on one connector: test, activate/deactivate, make default, import a config
file, connect through OAuth2, delete (after a confirmation page).

Each is a plain ``<form method="post">`` that works without JavaScript (POST, then a
redirect with a one-shot message); the test is also an htmx request that swaps its
result into the page. Whether an action is allowed is the service's decision: its
error is what the page shows.
"""

from __future__ import annotations

import base64

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from ...kernel.errors import ConnectorNotFoundError, JackfieldError
from ...service import Principal
from ..forms import read_upload
from ..render import flash, redirect, render
from ..session import UiForm, UiPrincipal, ui_router
from .connectors import admin_only, app_of, detail_page, error_text, not_found

router = ui_router()


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _back(request: Request, connector_id: str, message: str, kind: str = "success") -> Response:
    response = redirect(f"/connectors/{connector_id}")
    flash(request, response, message, kind)
    return response


@router.post("/connectors/{connector_id}/test")
def connector_test(request: Request, who: UiPrincipal, connector_id: str) -> Response:
    jf = app_of(request)
    try:
        result = jf.connectors.test(who, connector_id)
        view = jf.connectors.get(who, connector_id)
    except ConnectorNotFoundError:
        return not_found(request)
    except JackfieldError as exc:
        if _is_htmx(request):
            failed = {"success": False, "message": error_text(exc, who), "status": None}
            return render(request, "connector_test_result.html", result=failed, connector=None)
        return _back(request, connector_id, error_text(exc, who), "error")
    if _is_htmx(request):
        return render(request, "connector_test_result.html", result=result, connector=view)
    return detail_page(request, jf, who, view, test_result=result)


@router.post("/connectors/{connector_id}/activate")
def connector_activate(request: Request, who: UiPrincipal, connector_id: str) -> Response:
    return _set_enabled(request, who, connector_id, True)


@router.post("/connectors/{connector_id}/deactivate")
def connector_deactivate(request: Request, who: UiPrincipal, connector_id: str) -> Response:
    return _set_enabled(request, who, connector_id, False)


def _set_enabled(request: Request, who: Principal, connector_id: str, enabled: bool) -> Response:
    jf = app_of(request)
    try:
        view = jf.connectors.set_enabled(who, connector_id, enabled)
    except ConnectorNotFoundError:
        return not_found(request)
    except JackfieldError as exc:
        return _back(request, connector_id, error_text(exc, who), "error")
    state = "activated" if enabled else "deactivated"
    return _back(request, connector_id, f"“{view['name']}” is {state}.")


@router.post("/connectors/{connector_id}/default")
def connector_make_default(request: Request, who: UiPrincipal, connector_id: str) -> Response:
    jf = app_of(request)
    try:
        view = jf.connectors.update(who, connector_id, is_default=True)
    except ConnectorNotFoundError:
        return not_found(request)
    except JackfieldError as exc:
        return _back(request, connector_id, error_text(exc, who), "error")
    message = f"“{view['name']}” is now the default {view['category']} connector."
    return _back(request, connector_id, message)


@router.post("/connectors/{connector_id}/import")
def connector_import(
    request: Request, who: UiPrincipal, connector_id: str, form: UiForm
) -> Response:
    """Import a JSON config file: the upload goes to the service as base64."""
    jf = app_of(request)
    upload = form.get("file")
    content = read_upload(upload)
    if not content:
        return _back(request, connector_id, "Choose a JSON file to import.", "error")
    assert isinstance(upload, UploadFile)  # read_upload returned bytes
    try:
        jf.connectors.import_config(
            who,
            connector_id,
            file_content=base64.b64encode(content).decode(),
            file_name=upload.filename,
            file_mime=upload.content_type,
        )
    except ConnectorNotFoundError:
        return not_found(request)
    except JackfieldError as exc:
        return _back(request, connector_id, f"Import failed: {error_text(exc, who)}", "error")
    return _back(request, connector_id, f"Imported {upload.filename}. Test it to connect it.")


@router.post("/connectors/{connector_id}/connect")
def connector_connect(request: Request, who: UiPrincipal, connector_id: str) -> Response:
    """Start the OAuth2 flow: off to the provider's consent page."""
    jf = app_of(request)
    oauth = getattr(jf, "oauth", None)
    if oauth is None:
        return _back(request, connector_id, "OAuth2 is not available in this server.", "error")
    try:
        authorize_url = oauth.start(who, connector_id)
    except ConnectorNotFoundError:
        return not_found(request)
    except JackfieldError as exc:
        return _back(request, connector_id, error_text(exc, who), "error")
    return redirect(str(authorize_url))


@router.get("/connectors/{connector_id}/delete")
def connector_delete_confirm(request: Request, who: UiPrincipal, connector_id: str) -> HTMLResponse:
    jf = app_of(request)
    try:
        view = jf.connectors.get(who, connector_id)
    except ConnectorNotFoundError:
        return not_found(request)
    if (denied := admin_only(request, who)) is not None:
        return denied
    return render(request, "connector_delete.html", connector=view)


@router.post("/connectors/{connector_id}/delete")
def connector_delete(request: Request, who: UiPrincipal, connector_id: str) -> Response:
    jf = app_of(request)
    try:
        view = jf.connectors.get(who, connector_id)
        jf.connectors.delete(who, connector_id)
    except ConnectorNotFoundError:
        return not_found(request)
    except JackfieldError as exc:
        return _back(request, connector_id, error_text(exc, who), "error")
    response = redirect("/connectors")
    flash(request, response, f"Deleted “{view['name']}”.")
    return response
