"""Who is asking: every service call is scoped to one organization and one actor."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..kernel.errors import PermissionDeniedError


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"


@dataclass(frozen=True)
class Principal:
    organization_id: str
    actor: str
    role: Role
    user_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDeniedError("this action needs the admin role")

    @classmethod
    def operator(cls, organization_id: str, actor: str = "cli") -> Principal:
        """The operator at the command line: admin of the organization it names."""
        return cls(organization_id=organization_id, actor=actor, role=Role.ADMIN)
