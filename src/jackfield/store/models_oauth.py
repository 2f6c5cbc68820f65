"""OAuth2 flow state (owned by the OAuth service)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, utcnow


class OAuthState(Base):
    """A pending authorization: a single-use nonce bound to organization and connector.

    ``nonce`` holds the SHA-256 of the nonce sent in ``state`` (a read of the table does
    not reveal a usable state); ``code_verifier`` is encrypted at rest; ``actor`` is who
    started the flow, for the audit record the callback writes.
    """

    __tablename__ = "oauth_states"
    nonce: Mapped[str] = mapped_column(String(100), primary_key=True)
    connector_id: Mapped[str] = mapped_column(
        ForeignKey("connectors.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[str] = mapped_column(String(36))
    actor: Mapped[str] = mapped_column(String(320), default="")
    code_verifier: Mapped[str] = mapped_column(String(400))  # encrypted at rest
    redirect_uri: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
