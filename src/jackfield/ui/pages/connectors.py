"""Connector pages: the list, the create wizard (category + provider, then a form
generated from the provider's schema), and the connector page with its edit form.

The pages call ``ConnectorService`` and show what it says: validation, defaults and
permissions are its business; a ``ConnectorConfigError`` comes back as inline field
errors with the submitted values kept. Actions on one connector (test, activate, ...)
are in ``connector_actions``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from ...app import Jackfield
from ...kernel.config import ConfigField
from ...kernel.errors import (
    ConflictError,
    ConnectorConfigError,
    ConnectorNotFoundError,
    JackfieldError,
    PermissionDeniedError,
)
from ...kernel.provider import ConnectorProvider
from ...secrets import redactor
from ...service import Principal
from ...service.connector_changes import edit_version
from ..forms import (
    checkbox_value,
    form_fields,
    initial_values,
    params_from_form,
    submitted_values,
)
from ..render import flash, redirect, render
from ..session import UiForm, UiPrincipal, ui_router

router = ui_router()


# -- shared with connector_actions ----------------------------------------------------------
def app_of(request: Request) -> Jackfield:
    jf: Jackfield = request.app.state.jackfield
    return jf


def provider_class(jf: Jackfield, category: str, provider_type: str) -> type[ConnectorProvider]:
    return jf.registry.get(category, provider_type)


def error_text(exc: JackfieldError, who: Principal) -> str:
    """A service error as one line for the page (the organization's secrets masked)."""
    parts = [exc.message, exc.remediation]
    text = " ".join(_sentence(p) for p in parts if p and p.strip())
    return redactor.redact(text, org=who.organization_id)


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def admin_only(request: Request, who: Principal) -> HTMLResponse | None:
    """A 403 page when ``who`` may not change connectors (the service's rule), else
    ``None``: a page that is only a form for an admin says so when it is opened,
    instead of serving the form and refusing it once filled in."""
    try:
        who.require_admin()
    except PermissionDeniedError as exc:
        return render(
            request,
            "error.html",
            status_code=403,
            title="Admin role needed",
            message=f"{error_text(exc, who)} Ask an admin of your organization.",
        )
    return None


def not_found(request: Request) -> HTMLResponse:
    return render(
        request,
        "error.html",
        status_code=404,
        title="Connector not found",
        message="There is no such connector in your organization.",
    )


def stored_files(view: dict[str, Any]) -> list[str]:
    return [p["key"] for p in view["params"] if p["value_type"] == "file"]


def type_names(jf: Jackfield) -> dict[str, str]:
    return {t["provider_type"]: t["display_name"] for t in jf.connectors.provider_types()}


def detail_page(
    request: Request,
    jf: Jackfield,
    who: Principal,
    view: dict[str, Any],
    *,
    status_code: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    error: str = "",
    name: str | None = None,
    test_result: dict[str, Any] | None = None,
    version: str | None = None,
    notice: dict[str, str] | None = None,
) -> HTMLResponse:
    """The connector page; after a failed save, with the submitted values and errors.
    ``version``: the connector as the form was opened (see ``edit_version``), kept
    after a save refused as stale so that saving again stays refused until a reload.
    ``notice``: a message shown as a flash is (``_oauth_outcome``)."""
    cls = provider_class(jf, view["category"], view["provider_type"])
    schema = cls.config_schema()
    shown: dict[str, Any] = {"flashes": [notice]} if notice else {}
    stored = initial_values(schema, jf.connectors.get_config(who, view["id"]))
    if values is None:
        values = stored
    else:  # a form sent back: what it had no input for is shown as stored
        values = {**values, **{f.key: stored[f.key] for f in schema if f.read_only}}
    return render(
        request,
        "connector_detail.html",
        status_code=status_code,
        connector=view,
        provider=cls,
        fields=form_fields(
            schema,
            values,
            errors,
            stored_files=stored_files(view),
            stored_secrets=[p["key"] for p in view["params"] if p["secret"]],
        ),
        name=view["name"] if name is None else name,
        errors=errors or {},
        error=error,
        test_result=test_result,
        oauth=_has_oauth(cls),
        webhook_url=jf.webhook_url(view),
        other_settings=_other_settings(schema, view),
        version=edit_version(view, schema) if version is None else version,
        **shown,
    )


def _other_settings(schema: Iterable[ConfigField], view: dict[str, Any]) -> list[dict[str, str]]:
    """Stored params the provider has no field for (kept from an imported document):
    shown read-only, so what a save keeps is not invisible."""
    known = {f.key for f in schema}
    shown = []
    for param in view["params"]:
        if param["key"] in known:
            continue
        if param["secret"]:
            value = "stored (hidden)"
        elif param["value_type"] == "file":
            value = "a file is stored"
        else:
            value = str(param["value"])
        shown.append({"key": param["key"], "value": value})
    return shown


def _has_oauth(cls: type[ConnectorProvider]) -> bool:
    return "oauth2" in cls.capabilities


# -- list -----------------------------------------------------------------------------------
@router.get("/connectors")
def connectors_list(request: Request, who: UiPrincipal, category: str = "") -> HTMLResponse:
    jf = app_of(request)
    types = jf.connectors.provider_types()
    categories = sorted({t["category"] for t in types})
    items = jf.connectors.list(who, category=category or None)
    return render(
        request,
        "connectors.html",
        items=items,
        categories=categories,
        category=category,
        type_names=type_names(jf),
    )


# -- create ---------------------------------------------------------------------------------
@router.get("/connectors/new")
def connector_new(
    request: Request, who: UiPrincipal, category: str = "", provider_type: str = ""
) -> HTMLResponse:
    if (denied := admin_only(request, who)) is not None:
        return denied
    jf = app_of(request)
    if provider_type and not category:  # the provider alone names its category
        owners = [
            t["category"]
            for t in jf.connectors.provider_types()
            if t["provider_type"] == provider_type
        ]
        category = owners[0] if len(owners) == 1 else ""
    if category and provider_type and jf.registry.is_registered(category, provider_type):
        schema = provider_class(jf, category, provider_type).config_schema()
        return _create_form(request, jf, category, provider_type, initial_values(schema, None))
    error = ""
    if provider_type:
        error = f"Choose a provider of the {category or 'selected'} category."
    return _chooser(request, jf, category, provider_type, error)


@router.get("/connectors/new/providers")
def provider_options(request: Request, who: UiPrincipal, category: str = "") -> HTMLResponse:
    """htmx: the provider ``<select>`` for one category."""
    jf = app_of(request)
    return render(
        request,
        "connector_provider_select.html",
        groups=_provider_groups(jf, category),
        provider_type="",
    )


@router.post("/connectors")
def connector_create(request: Request, who: UiPrincipal, form: UiForm) -> Response:
    jf = app_of(request)
    category = str(form.get("category") or "")
    provider_type = str(form.get("provider_type") or "")
    if not jf.registry.is_registered(category, provider_type):
        return _chooser(request, jf, category, provider_type, "Choose a category and a provider.")
    schema = provider_class(jf, category, provider_type).config_schema()
    name = str(form.get("name") or "")
    is_default = checkbox_value(form, "is_default")
    try:
        if is_default is None:  # a hand-made form's "maybe"
            raise ConnectorConfigError(
                "the default choice must be yes or no",
                field_errors={"is_default": "must be ticked or not: true or false"},
            )
        view = jf.connectors.create(
            who,
            name=name,
            category=category,
            provider_type=provider_type,
            params=params_from_form(schema, form),
            is_default=is_default,
        )
    except JackfieldError as exc:
        errors = exc.field_errors if isinstance(exc, ConnectorConfigError) else {}
        return _create_form(
            request,
            jf,
            category,
            provider_type,
            submitted_values(schema, form),
            name=name,
            is_default=bool(is_default),
            errors=errors,
            error=error_text(exc, who),
            status_code=422 if isinstance(exc, ConnectorConfigError) else 403,
        )
    response = redirect(f"/connectors/{view['id']}")
    flash(request, response, f"Created “{view['name']}”. Test it to connect it.")
    return response


def _provider_groups(jf: Jackfield, category: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
    types = jf.connectors.provider_types(category or None)
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in types:
        groups.setdefault(item["category"], []).append(item)
    return sorted(groups.items())


def _chooser(
    request: Request, jf: Jackfield, category: str, provider_type: str, error: str
) -> HTMLResponse:
    categories = sorted({t["category"] for t in jf.connectors.provider_types()})
    return render(
        request,
        "connector_new.html",
        status_code=422 if error else 200,
        categories=categories,
        category=category if category in categories else "",
        groups=_provider_groups(jf, category if category in categories else ""),
        provider_type=provider_type,
        error=error,
    )


def _create_form(
    request: Request,
    jf: Jackfield,
    category: str,
    provider_type: str,
    values: dict[str, str],
    *,
    name: str = "",
    is_default: bool = False,
    errors: dict[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    cls = provider_class(jf, category, provider_type)
    return render(
        request,
        "connector_create.html",
        status_code=status_code,
        provider=cls,
        fields=form_fields(cls.config_schema(), values, errors),
        name=name,
        is_default=is_default,
        errors=errors or {},
        error=error,
    )


# -- one connector ------------------------------------------------------------------------
@router.get("/connectors/{connector_id}")
def connector_detail(request: Request, who: UiPrincipal, connector_id: str) -> HTMLResponse:
    jf = app_of(request)
    try:
        view = jf.connectors.get(who, connector_id)
    except ConnectorNotFoundError:
        return not_found(request)
    if request.query_params.get("oauth") == "done":  # back from the provider's consent
        return detail_page(request, jf, who, view, notice=_oauth_outcome(view))
    return detail_page(request, jf, who, view)


def _oauth_outcome(view: dict[str, Any]) -> dict[str, str]:
    """How the OAuth connect went, as the callback recorded it on the connector (read
    from the database: the query only asks for the notice, so no link can word it)."""
    if view["status"] == "connected":
        return {"kind": "success", "message": f"Connected: {view['status_message']}"}
    return {"kind": "error", "message": f"Not connected: {view['status_message']}"}


@router.post("/connectors/{connector_id}")
def connector_update(
    request: Request, who: UiPrincipal, connector_id: str, form: UiForm
) -> Response:
    jf = app_of(request)
    try:
        view = jf.connectors.get(who, connector_id)
    except ConnectorNotFoundError:
        return not_found(request)
    schema = provider_class(jf, view["category"], view["provider_type"]).config_schema()
    name = str(form.get("name") or "")
    version = form.get("version")
    try:
        updated = jf.connectors.update(
            who,
            connector_id,
            expected_version=version if isinstance(version, str) else None,
            name=name,
            params=params_from_form(
                schema,
                form,
                stored_files=stored_files(view),
                keep_keys=_extra_keys(schema, view),
            ),
        )
    except ConnectorNotFoundError:
        return not_found(request)
    except JackfieldError as exc:
        errors = exc.field_errors if isinstance(exc, ConnectorConfigError) else {}
        return detail_page(
            request,
            jf,
            who,
            view,
            status_code=_status_of(exc),
            values=submitted_values(schema, form),
            errors=errors,
            error=error_text(exc, who),
            name=name,
            version=version if isinstance(version, str) else None,
        )
    response = redirect(f"/connectors/{connector_id}")
    flash(request, response, _saved_text(view, updated))
    return response


def _status_of(exc: JackfieldError) -> int:
    if isinstance(exc, ConnectorConfigError):
        return 422
    return 409 if isinstance(exc, ConflictError) else 403


def _saved_text(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What a save did: nothing (the service leaves an unchanged connector as it was,
    ``updated_at`` included), or a change -- which needs a new test when it changed the
    configuration of a tested connector."""
    if after["updated_at"] == before["updated_at"]:
        return f"Nothing changed in “{after['name']}”."
    if after["status"] == "draft" and before["status"] != "draft":
        return f"Saved “{after['name']}”. Test it again to reconnect it."
    return f"Saved “{after['name']}”."


def _extra_keys(schema: Iterable[ConfigField], view: dict[str, Any]) -> list[str]:
    """Stored keys the form has no input for: unknown to the schema, or read-only."""
    editable = {f.key for f in schema if not f.read_only}
    return [p["key"] for p in view["params"] if p["key"] not in editable]
