"""Connector CRUD, test, activate/deactivate, import-config and config.

Each route translates HTTP to one ``ConnectorService`` call and back; roles, tenancy
(another organization's connector is a 404), validation of params and masking of
secrets all happen in the service. ``setup_app`` installs the request guards
(body size limits, NUL bytes in URLs, credentials before bodies) for the whole
application.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Query, Response

from ..deps import JF, Caller
from ..limits import BodySizeLimit, CredentialsFirst
from ..schemas import (
    ConfigOut,
    ConnectorCreate,
    ConnectorId,
    ConnectorList,
    ConnectorOut,
    ConnectorUpdate,
    ImportConfig,
    TestResult,
    error_responses,
)

router = APIRouter(prefix="/api/connectors", tags=["connectors"])
READ = error_responses(400, 401, 404, 422)
WRITE = error_responses(400, 401, 403, 404, 422)


def setup_app(app: FastAPI) -> None:
    app.add_middleware(CredentialsFirst, jf=app.state.jackfield)
    app.add_middleware(BodySizeLimit)


@router.get("", response_model=ConnectorList, responses=error_responses(400, 401, 422))
def list_connectors(
    jf: JF,
    who: Caller,
    category: str | None = Query(default=None, max_length=50),
    organization_id: str | None = Query(
        default=None, max_length=100, description="only the caller's own organization lists"
    ),
    limit: int = Query(default=100, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=100),
) -> dict[str, Any]:
    """The connectors of the caller's organization (``?category=`` filters)."""
    if organization_id is not None and organization_id != who.organization_id:
        return {"items": [], "next_cursor": None}  # never another organization's data
    return jf.connectors.page(who, category=category, limit=limit, cursor=cursor)


@router.post(
    "",
    status_code=201,
    response_model=ConnectorOut,
    responses=error_responses(400, 401, 403, 413, 422),
)
def create_connector(jf: JF, who: Caller, body: ConnectorCreate) -> dict[str, Any]:
    """Create a connector (``params`` and/or nested ``config``); admin only."""
    return jf.connectors.create(
        who,
        name=body.name,
        category=body.category,
        provider_type=body.provider_type,
        params=[p.model_dump(exclude_none=True) for p in body.params or []] or None,
        config=body.config,
        is_default=body.is_default,
    )


@router.get("/{connector_id}", response_model=ConnectorOut, responses=READ)
def get_connector(jf: JF, who: Caller, connector_id: ConnectorId) -> dict[str, Any]:
    return jf.connectors.get(who, connector_id)


@router.put(
    "/{connector_id}",
    response_model=ConnectorOut,
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def update_connector(
    jf: JF, who: Caller, connector_id: ConnectorId, body: ConnectorUpdate
) -> dict[str, Any]:
    """Change name, params (they replace the stored set; the mask keeps a stored secret,
    a file param sent back as GET shows it keeps its file, ``""`` removes the file),
    config or default flag; fields left out stay as they are."""
    params = None if body.params is None else [p.model_dump(exclude_none=True) for p in body.params]
    return jf.connectors.update(
        who,
        connector_id,
        name=body.name,
        params=params,
        config=body.config,
        is_default=body.is_default,
        category=body.category,
        provider_type=body.provider_type,
    )


@router.delete(
    "/{connector_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404, 422),
)
def delete_connector(jf: JF, who: Caller, connector_id: ConnectorId) -> Response:
    jf.connectors.delete(who, connector_id)
    return Response(status_code=204)


@router.post("/{connector_id}/test", response_model=TestResult, responses=WRITE)
def test_connector(jf: JF, who: Caller, connector_id: ConnectorId) -> dict[str, Any]:
    """Run the provider's ``test_connection`` and record the outcome on the connector."""
    return jf.connectors.test(who, connector_id)


@router.post(
    "/{connector_id}/activate",
    response_model=ConnectorOut,
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
def activate_connector(jf: JF, who: Caller, connector_id: ConnectorId) -> dict[str, Any]:
    """Enable the connector; 409 unless its last test succeeded (status ``connected``)."""
    return jf.connectors.set_enabled(who, connector_id, True)


@router.post("/{connector_id}/deactivate", response_model=ConnectorOut, responses=WRITE)
def deactivate_connector(jf: JF, who: Caller, connector_id: ConnectorId) -> dict[str, Any]:
    return jf.connectors.set_enabled(who, connector_id, False)


@router.post(
    "/{connector_id}/import-config",
    response_model=ConnectorOut,
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def import_config(
    jf: JF, who: Caller, connector_id: ConnectorId, body: ImportConfig
) -> dict[str, Any]:
    """Replace all params with an imported JSON document (``json_data``, or a file as
    base64 ``file_content``), after the provider's ``normalize_import_json``."""
    return jf.connectors.import_config(
        who,
        connector_id,
        json_data=body.json_data,
        file_content=body.file_content,
        file_name=body.file_name,
        file_mime=body.file_mime,
    )


@router.get("/{connector_id}/config", response_model=ConfigOut, responses=READ)
def get_config(jf: JF, who: Caller, connector_id: ConnectorId) -> dict[str, Any]:
    """The nested config with secret values masked (readable by every role, like the
    connector itself, whose params show the same masked values)."""
    return {"success": True, "config": jf.connectors.get_config(who, connector_id)}
