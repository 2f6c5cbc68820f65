"""The public shapes of CONTRACT.md (connector, provider type), built in one place so the
REST API, the CLI and the UI show the same thing. Secret values become the mask here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..kernel.config import SECRET_MASK, schema_to_json_schema
from ..kernel.errors import ConnectorConfigError
from ..kernel.inbound import ways_in
from ..kernel.provider import Capability, ConnectorProvider
from ..store import Connector

MAX_ROW_ID = 2**63 - 1
"""The largest id an INTEGER key holds (SQLite and PostgreSQL ``bigint``)."""
_ROW_ID_DIGITS = len(str(MAX_ROW_ID))

CURSOR_HINT = "Pass the next_cursor of the previous page, or no cursor for the first page."


class InvalidQueryError(ConnectorConfigError):
    """A list's cursor or filter that cannot be used (``?cursor=``, ``?state=``): the
    request's fault, the same code on every list -- not a connector's config nor a
    message's."""

    code = "invalid_request"
    default_remediation = "Check the list's filters against the API documentation."


def invalid_cursor(cursor: object) -> InvalidQueryError:
    """The error for a cursor no list made (every list pages with ``next_cursor``)."""
    return InvalidQueryError(
        f"invalid cursor {str(cursor)[:40]!r}",
        field_errors={"cursor": "a next_cursor value, as returned"},
        remediation=CURSOR_HINT,
    )


def parse_row_id(text: str | None) -> int | None:
    """A row id a client gave back (a cursor, ``Last-Event-ID``, ``after``): ``None``
    unless it is a whole number the database can hold -- a larger one would fail in the
    driver, not as a clear error."""
    if not text or len(text) > _ROW_ID_DIGITS or not text.isascii() or not text.isdigit():
        return None  # (Python refuses to convert more than 4,300 digits)
    value = int(text)
    return value if value <= MAX_ROW_ID else None


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC, whatever zone it came in (a naive one is UTC, as SQLite stores
    it; PostgreSQL's come with the session's zone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """A time as every response and page gives it: ISO-8601 in UTC (``+00:00``)."""
    return None if value is None else as_utc(value).isoformat()


def connector_view(connector: Connector) -> dict[str, Any]:
    return {
        "id": connector.id,
        "name": connector.name,
        "category": connector.category,
        "provider_type": connector.provider_type,
        "organization_id": connector.organization_id,
        "is_enabled": connector.is_enabled,
        "is_default": connector.is_default,
        "status": connector.status,
        "status_message": connector.status_message,
        "last_tested_at": iso(connector.last_tested_at),
        "params": [
            {
                "key": row.key,
                "value": SECRET_MASK if row.is_secret else row.value,
                "value_type": row.value_type,
                "sequence": row.sequence,
                "secret": row.is_secret,
            }
            for row in connector.params
        ],
        "created_at": iso(connector.created_at),
        "updated_at": iso(connector.updated_at),
    }


_SOURCE_CAPABILITIES = {
    "subscription": Capability.SUBSCRIPTION,
    "polling": Capability.POLLING,
    "webhooks": Capability.WEBHOOK,
}


def provider_type_view(cls: type[ConnectorProvider]) -> dict[str, Any]:
    # a provider's inbound sources are capabilities whether or not its author listed them
    sources = {_SOURCE_CAPABILITIES[way] for way in ways_in(cls)}
    return {
        "provider_type": cls.provider_type,
        "display_name": cls.display_name,
        "category": cls.category,
        "tier": str(cls.tier),
        "capabilities": sorted({*cls.capabilities, *sources}),
        "config_schema": schema_to_json_schema(cls.config_schema()),
    }
