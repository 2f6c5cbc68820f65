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

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Base",
    "Connector",
    "ConnectorParam",
    "Database",
    "Meta",
    "Organization",
    "User",
    "create_db_engine",
    "is_current",
    "is_sqlite",
    "new_uuid",
    "normalize_url",
    "sqlite_file",
    "upgrade",
    "utcnow",
]
