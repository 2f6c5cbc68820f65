"""Keyset pages of the connector list, in (``created_at``, ``id``) order.

The cursor names the last connector a page showed (its creation time and id), not a
position: deleting or adding connectors between two requests neither skips nor repeats
one, as with the outbox and inbox cursors (row ids). A deleted connector still works as
a cursor, since its values, not the row, are compared.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_

from ..store import Connector
from .views import invalid_cursor

_SEPARATOR = "|"


def connector_cursor(connector: Connector) -> str:
    """The opaque cursor that pages on after ``connector``."""
    raw = f"{connector.created_at.isoformat()}{_SEPARATOR}{connector.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def after_cursor(cursor: str) -> Any:
    """The WHERE clause for the connectors after ``cursor``; a cursor this module did not
    make is an ``InvalidQueryError``."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)).decode()
        created, sep, connector_id = raw.partition(_SEPARATOR)
        created_at = datetime.fromisoformat(created)
    except (binascii.Error, ValueError, UnicodeError):
        sep, connector_id, created_at = "", "", None
    if not sep or not connector_id or created_at is None or created_at.tzinfo is None:
        raise invalid_cursor(cursor)
    return or_(
        Connector.created_at > created_at,
        and_(Connector.created_at == created_at, Connector.id > connector_id),
    )
