"""Runtime state as users see it: supervised units of an organization, and restarts.

The supervisor (``jackfield.runtime``) writes ``runtime_units``; this module reads them
for the API, UI and CLI, and records an operator's restart request. A request is a row
update, so it reaches the supervisor wherever it runs (``jackfield runtime restart`` in
another process, or another node): the supervisor polls for requests and acts on them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..kernel.errors import ConflictError, ConnectorNotFoundError
from ..store import Connector, Database, utcnow
from ..store.models_outbox import RuntimeUnit
from . import audit
from .context import Principal
from .views import iso

LIVENESS = ("stopped", "starting", "running", "restarting", "crashed", "failed")
READINESS = (
    "ready",
    "missing_credential",
    "auth_failed",
    "misconfigured",
    "degraded",
    "unreachable",
)


def unit_view(unit: RuntimeUnit, connector_name: str | None = None) -> dict[str, Any]:
    view = {
        "connector_id": unit.connector_id,
        "liveness": unit.liveness,
        "readiness": unit.readiness,
        "restart_count": unit.restart_count,
        "last_error": unit.last_error,
        "node": unit.node,
        "next_restart_at": iso(unit.next_restart_at),
        "restart_requested": unit.restart_requested_at is not None,
        "updated_at": iso(unit.updated_at),
    }
    if connector_name is not None:
        view["connector_name"] = connector_name
    return view


class RuntimeUnitService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, who: Principal) -> list[dict[str, Any]]:
        """Every supervised unit of the caller's organization, by connector name."""
        with self.db.transaction() as s:
            rows = s.execute(
                select(RuntimeUnit, Connector.name)
                .join(Connector, Connector.id == RuntimeUnit.connector_id)
                .where(RuntimeUnit.organization_id == who.organization_id)
                .order_by(Connector.name, Connector.id)
            ).all()
            return [unit_view(unit, name) for unit, name in rows]

    def get(self, who: Principal, connector_id: str) -> dict[str, Any]:
        with self.db.transaction() as s:
            connector = _connector(s, who, connector_id)
            unit = s.get(RuntimeUnit, connector.id)
            if unit is None:
                raise ConnectorNotFoundError(
                    f"connector {connector_id} is not supervised",
                    remediation="Enable it; a unit starts with inbound sources or messages.",
                )
            return unit_view(unit, connector.name)

    def request_restart(self, who: Principal, connector_id: str) -> dict[str, Any]:
        """Ask the supervisor to restart a unit now (this also clears ``failed``)."""
        who.require_admin()
        with self.db.transaction() as s:
            connector = _connector(s, who, connector_id)
            if not connector.is_enabled:
                raise ConflictError(
                    f"connector {connector_id} is not enabled",
                    remediation="Activate the connector; its unit then starts by itself.",
                )
            unit = s.get(RuntimeUnit, connector.id, with_for_update=True)
            if unit is None:
                unit = RuntimeUnit(
                    connector_id=connector.id,
                    organization_id=connector.organization_id,
                    liveness="starting",
                    readiness="ready",
                    restart_count=0,
                )
                s.add(unit)
            elif unit.liveness in ("failed", "crashed", "stopped"):
                unit.liveness = "restarting"
            unit.restart_requested_at = utcnow()
            unit.updated_at = utcnow()
            audit.record(s, who, "runtime.restart", "connector", connector.id)
            s.flush()
            return unit_view(unit, connector.name)


def _connector(s: Session, who: Principal, connector_id: str) -> Connector:
    connector = s.get(Connector, str(connector_id))
    if connector is None or connector.organization_id != who.organization_id:
        raise ConnectorNotFoundError(f"no connector {connector_id}")
    return connector
