"""Persistence: SQLAlchemy models, the database handle, Alembic migrations."""

from .db import Database, create_db_engine, is_sqlite, normalize_url, sqlite_file
from .migrate import is_current, upgrade
from .models import (
    ApiToken,
    AuditEvent,
    Base,
    Connector,
    ConnectorParam,
    Meta,
    Organization,
    User,
    new_uuid,
    utcnow,
)
from .outage import OutageLog, database_unavailable, outage_reason

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Base",
    "Connector",
    "ConnectorParam",
    "Database",
    "Meta",
    "Organization",
    "OutageLog",
    "User",
    "create_db_engine",
    "database_unavailable",
    "is_current",
    "is_sqlite",
    "new_uuid",
    "normalize_url",
    "outage_reason",
    "sqlite_file",
    "upgrade",
    "utcnow",
]
