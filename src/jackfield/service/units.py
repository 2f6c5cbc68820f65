"""Runtime state as users see it: supervised units of an organization, and restarts.

The supervisor (``jackfield.runtime``) of every node writes its own ``runtime_units``
rows; this module reads them for the API, UI and CLI (one item per connector and node),
and records an operator's restart request. A request increments the connector's
generation in ``runtime_restarts``, so it reaches every supervisor wherever it runs
(``jackfield runtime restart`` in another process, or other nodes): each polls for
newer generations and restarts its own unit.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..kernel.errors import ConflictError, ConnectorNotFoundError
from ..store import Connector, Database, utcnow
from ..store.models_outbox import RuntimeRestart, RuntimeUnit
from . import audit
from .context import Principal
from .lookup import load_connector
from .nodes import ended_here
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


#: which of a connector's units (one per node) speaks for it where one view is shown:
#: the one most in need of attention
URGENCY = ("failed", "crashed", "restarting", "starting", "running", "stopped")
DOWN = frozenset({"crashed", "failed", "stopped"})  # no generation of the unit runs


def unit_view(
    unit: RuntimeUnit,
    requested: int,
    connector_name: str | None = None,
    *,
    silent_since: datetime | None = None,
) -> dict[str, Any]:
    """The unit as the API shows it. A row not rewritten since ``silent_since`` while it
    says its unit runs belongs to a node that ended without shutting down (killed, or
    its machine lost): nothing runs that unit, whatever the row says. So does the row of
    a node whose process, on this hostname, is gone (``ended_here``: known at once).
    Another live node sweeps such rows; until then, it is shown ``stopped`` here, with
    why."""
    liveness, last_error = unit.liveness, unit.last_error
    written = unit.updated_at  # (None: a row about to be made, not yet written)
    if liveness not in DOWN and written:
        if silent_since is not None and written < silent_since:
            liveness = "stopped"
            last_error = (
                f"node {unit.node or '?'} has not reported since {iso(unit.updated_at)}:"
                " it ended without shutting down"
            )
        elif unit.node and ended_here(unit.node):
            liveness = "stopped"
            last_error = (
                f"node {unit.node} last reported at {iso(unit.updated_at)}; its process is"
                " gone: it ended without shutting down"
            )
    view = {
        "connector_id": unit.connector_id,
        "liveness": liveness,
        "readiness": unit.readiness,
        "restart_count": unit.restart_count,
        "last_error": last_error,
        "node": unit.node or None,
        "next_restart_at": iso(unit.next_restart_at),
        "restart_requested": unit.restart_seen < requested,
        "updated_at": iso(unit.updated_at),
    }
    if connector_name is not None:
        view["connector_name"] = connector_name
    return view


def _urgency(unit: RuntimeUnit) -> int:
    return URGENCY.index(unit.liveness) if unit.liveness in URGENCY else 0


class RuntimeUnitService:
    def __init__(self, db: Database, *, silent_after: timedelta = timedelta(seconds=60)) -> None:
        self.db = db
        self.silent_after = silent_after  # a node's rows older than this: the node is gone

    def list(self, who: Principal) -> list[dict[str, Any]]:
        """Every supervised unit of the caller's organization (one per connector and
        node), by connector name."""
        return self._list(RuntimeUnit.organization_id == who.organization_id)

    def list_deployment(self) -> builtins.list[dict[str, Any]]:
        """Every unit of every organization, each with its ``organization_id``: the
        runtime as its operator runs it (the CLI, which holds the database and the master
        key anyway). Never for an API caller: organizations do not see each other."""
        return self._list(true(), with_organization=True)

    def _list(
        self, which: Any, *, with_organization: bool = False
    ) -> builtins.list[dict[str, Any]]:
        generation = func.coalesce(RuntimeRestart.generation, 0)
        with self.db.snapshot() as s:
            rows = s.execute(
                select(RuntimeUnit, generation, Connector.name)
                .join(Connector, Connector.id == RuntimeUnit.connector_id)
                .outerjoin(RuntimeRestart, RuntimeRestart.connector_id == RuntimeUnit.connector_id)
                .where(which)
                .order_by(Connector.name, Connector.id, RuntimeUnit.node)
            ).all()
            views = []
            silent_since = utcnow() - self.silent_after
            for unit, requested, name in rows:
                view = unit_view(unit, requested, name, silent_since=silent_since)
                if with_organization:
                    view["organization_id"] = unit.organization_id
                views.append(view)
            return views

    def get(self, who: Principal, connector_id: str) -> dict[str, Any]:
        """A connector's unit; with several nodes, the one most in need of attention."""
        with self.db.snapshot() as s:
            connector = load_connector(s, connector_id, organization_id=who.organization_id)
            units = _units(s, connector.id)
            if not units:
                raise ConnectorNotFoundError(
                    f"connector {connector_id} is not supervised",
                    remediation="Enable it; a unit starts with inbound sources or messages.",
                )
            restart = s.get(RuntimeRestart, connector.id)
            generation = restart.generation if restart else 0
            silent_since = utcnow() - self.silent_after
            return unit_view(units[0], generation, connector.name, silent_since=silent_since)

    def request_restart(self, who: Principal, connector_id: str) -> dict[str, Any]:
        """Ask every node's supervisor to restart its unit now (this also clears
        ``failed``). Answers with the unit ``get`` shows, or the one about to start."""
        who.require_admin()
        with self.db.transaction() as s:
            connector = load_connector(s, connector_id, organization_id=who.organization_id)
            if not connector.is_enabled:
                raise ConflictError(
                    f"connector {connector.name!r} is not enabled",
                    remediation="Activate the connector; its unit then starts by itself.",
                )
            restart = _restart_row(s, connector)
            restart.generation += 1
            restart.requested_at = utcnow()
            # shown at once; not a sign of life, so ``updated_at`` (what the sweep of a
            # vanished node's rows goes by) is left as the node wrote it
            s.execute(
                update(RuntimeUnit)
                .where(RuntimeUnit.connector_id == connector.id, RuntimeUnit.liveness.in_(DOWN))
                .values(liveness="restarting", updated_at=RuntimeUnit.updated_at)
            )
            units = _units(s, connector.id)
            audit.record(s, who, "runtime.restart", "connector", connector.id)
            s.flush()
            if not units:  # no node runs it yet: the supervisors start it
                units = [
                    RuntimeUnit(
                        connector_id=connector.id,
                        node="",
                        liveness="starting",
                        readiness="ready",
                        restart_count=0,
                        restart_seen=0,
                    )
                ]
            silent = utcnow() - self.silent_after
            return unit_view(units[0], restart.generation, connector.name, silent_since=silent)


def end_failed_units(s: Session, connector_id: str) -> None:
    """The connector is deactivated: its ``failed`` units end, ``stopped``, as a running
    node's supervisor ends every unit of a disabled connector -- also those of a node
    that is down now, which would otherwise keep its unit failed when it comes back, after
    the connector was activated again. An activation starts afresh, wherever the node."""
    s.execute(
        update(RuntimeUnit)
        .where(RuntimeUnit.connector_id == connector_id, RuntimeUnit.liveness == "failed")
        .values(liveness="stopped", next_restart_at=None, updated_at=RuntimeUnit.updated_at)
    )


def _restart_row(s: Session, connector: Connector) -> RuntimeRestart:
    """The connector's restart generation, locked (created at 0 the first time; when two
    requests create it at once, the second takes the first one's row)."""
    restart = s.get(RuntimeRestart, connector.id, with_for_update=True)
    if restart is not None:
        return restart
    try:
        with s.begin_nested():
            s.add(
                RuntimeRestart(
                    connector_id=connector.id,
                    organization_id=connector.organization_id,
                    generation=0,
                )
            )
    except IntegrityError:
        pass
    restart = s.get(RuntimeRestart, connector.id, with_for_update=True, populate_existing=True)
    assert restart is not None
    return restart


def _units(s: Session, connector_id: str) -> list[RuntimeUnit]:
    """A connector's units on every node, the one most in need of attention first."""
    units = s.scalars(select(RuntimeUnit).where(RuntimeUnit.connector_id == connector_id))
    return sorted(units, key=lambda u: (_urgency(u), u.node))
