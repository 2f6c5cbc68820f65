"""Connectors looked up by the id a caller gave, in one place for every entry point.

Connector ids are UUIDs, stored in lower case; ``ABC...`` names the same connector as
``abc...`` whether it came through REST, the CLI, a UI address or embedded Python, so
the service normalises it itself rather than trusting each front end to. Text that is
not a UUID names no connector: it is not found without asking the database (which
could refuse it, e.g. a NUL character on PostgreSQL).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from ..kernel.errors import ConnectorNotFoundError
from ..store import Connector


def stored_connector_id(text: str) -> str | None:
    """``text`` in the form connector ids are stored in, or ``None`` if it is no UUID."""
    try:
        return str(uuid.UUID(text))
    except (TypeError, ValueError, AttributeError):
        return None


def connector_id_of(text: str) -> str:
    """A connector id as a client gave it, in the form it is stored in. Text that is
    not a UUID is returned as is (it names no connector)."""
    return stored_connector_id(text) or text


def stored_id_of(connector_id: str) -> str:
    """The stored form of a connector id a caller gave, or ``ConnectorNotFoundError``
    when it is no UUID (before it reaches the database)."""
    key = stored_connector_id(connector_id)
    if key is None:
        raise ConnectorNotFoundError(f"no connector {connector_id}")
    return key


def load_connector(
    s: Session,
    connector_id: str,
    *,
    organization_id: str | None = None,
    lock: dict[str, Any] | bool | None = None,
) -> Connector:
    """The connector ``connector_id`` names (in any letter case), of ``organization_id``
    when given -- another organization's looks exactly like a missing one. ``lock``:
    SQLAlchemy's ``with_for_update``."""
    connector = s.get(Connector, stored_id_of(connector_id), with_for_update=lock)
    if connector is None or organization_id not in (None, connector.organization_id):
        raise ConnectorNotFoundError(f"no connector {connector_id}")
    return connector
