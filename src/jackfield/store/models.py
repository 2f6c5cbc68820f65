"""SQLAlchemy models of the foundation: organizations, users, tokens, connectors, params,
audit events and instance metadata. Runtime and OAuth tables live in their own modules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

ROW_ID = BigInteger().with_variant(Integer, "sqlite")
"""The id of a table that grows without end: 64-bit (on SQLite an ``INTEGER PRIMARY
KEY`` is already, and only that spelling makes it the rowid, numbered on insert)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: naive values are taken as UTC; others are converted (SQLite
    keeps no offset, so 12:00+05:00 stored as is would read back as 12:00 UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        # (an offset other than UTC: a PostgreSQL session in another zone)
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Meta(Base):
    """Instance-wide values, e.g. the master key check."""

    __tablename__ = "jf_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # UI sessions issued before this are void (logout): the cookie is not stored
    sessions_ended_at: Mapped[datetime | None]


class ApiToken(Base):
    """An API token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    user: Mapped[User] = relationship(lazy="joined")


class Connector(Base):
    __tablename__ = "connectors"
    __table_args__ = (
        # at most one default per (organization, category), enforced by the database too
        Index(
            "uq_connectors_default_per_category",
            "organization_id",
            "category",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(50))
    provider_type: Mapped[str] = mapped_column(String(100))
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    status_message: Mapped[str] = mapped_column(Text, default="")
    last_tested_at: Mapped[datetime | None]
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # legacy, read-only fallback
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    params: Mapped[list[ConnectorParam]] = relationship(
        back_populates="connector",
        cascade="all, delete-orphan",
        order_by="ConnectorParam.sequence",
        lazy="selectin",
    )


class ConnectorParam(Base):
    """One key/value of a connector's config. Secret values are stored encrypted; a file
    param's content lives in the data directory and ``file_ref`` points at it."""

    __tablename__ = "connector_params"
    __table_args__ = (UniqueConstraint("connector_id", "key", name="uq_connector_params_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connector_id: Mapped[str] = mapped_column(
        ForeignKey("connectors.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[str | None] = mapped_column(Text)
    value_type: Mapped[str] = mapped_column(String(10), default="text")
    file_ref: Mapped[str | None] = mapped_column(String(500))
    sequence: Mapped[int] = mapped_column(Integer, default=10)
    is_secret: Mapped[bool] = mapped_column(Boolean, default=False)
    connector: Mapped[Connector] = relationship(back_populates="params")


class AuditEvent(Base):
    """Who did what to which resource, and how it ended. Never holds a secret value."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(ROW_ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    organization_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
