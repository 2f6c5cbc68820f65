"""Runtime state: supervised units of the caller's organization, and restarts.

``GET /api/runtime`` may be read by any member; ``POST /api/connectors/{id}/restart``
is admin only and also clears a ``failed`` unit. The restart is recorded in the
database, so it reaches the supervisor wherever it runs; this process's supervisor is
poked to act at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..deps import JF, Caller
from ..schemas import DATE_TIME, ConnectorId, error_responses

router = APIRouter(tags=["runtime"])


class UnitOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    connector_id: str
    connector_name: str | None = None
    liveness: str = Field(
        json_schema_extra={
            "enum": ["stopped", "starting", "running", "restarting", "crashed", "failed"]
        }
    )
    readiness: str = Field(
        json_schema_extra={
            "enum": [
                "ready",
                "missing_credential",
                "auth_failed",
                "misconfigured",
                "degraded",
                "unreachable",
            ]
        }
    )
    restart_count: int
    last_error: str | None
    node: str | None
    next_restart_at: str | None = Field(default=None, json_schema_extra=DATE_TIME)
    restart_requested: bool = Field(
        default=False, description="a restart was asked for and this node has not acted yet"
    )
    updated_at: str | None = Field(default=None, json_schema_extra=DATE_TIME)


class UnitList(BaseModel):
    items: list[UnitOut]
    next_cursor: str | None = None


@router.get("/api/runtime", response_model=UnitList, responses=error_responses(401))
def runtime_status(jf: JF, who: Caller) -> dict[str, Any]:
    """Liveness and readiness of every supervised unit of the caller's organization:
    one item per connector and node that runs it."""
    return {"items": jf.runtime.units.list(who), "next_cursor": None}


@router.post(
    "/api/connectors/{connector_id}/restart",
    response_model=UnitOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
def restart_unit(
    jf: JF,
    who: Caller,
    connector_id: ConnectorId,
) -> dict[str, Any]:
    """Restart the connector's unit on every node now (409 when the connector is not
    enabled); answers with the unit most in need of attention."""
    return jf.runtime.restart(who, connector_id)
