"""Organizations, users and API tokens; authentication of tokens and passwords."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..kernel.errors import AuthenticationError, ConflictError, ConnectorConfigError
from ..store import ApiToken, Database, Organization, User
from . import audit
from .context import Principal, Role
from .login_throttle import LoginThrottle
from .passwords import hash_password, hash_token, new_token, verify_password
from .views import iso

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
BOOTSTRAP_ORG = "default"
BOOTSTRAP_EMAIL = "admin@localhost"
MIN_PASSWORD = 8
TOKEN_USE_GRANULARITY = timedelta(minutes=1)


class NotFound(ConnectorConfigError):
    """A named organization or user that does not exist (a user error, not a 404 route)."""

    code = "not_found"
    default_remediation = "Check the spelling: names and emails must match exactly."


class InvalidAccountInput(ConnectorConfigError):
    """A malformed email, role, name or password: a user error like a connector's bad
    config (the same status and exit code), with a remediation about accounts."""

    code = "invalid_input"
    default_remediation = "Correct the value and try again."


@dataclass(frozen=True)
class BootstrapAdmin:
    email: str
    password: str
    generated: bool


class AccountService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.login_throttle = LoginThrottle()  # slows password guessing, per email

    # -- organizations ----------------------------------------------------------------
    def create_org(self, name: str, *, actor: str = "cli") -> dict[str, Any]:
        name = _clean_name(name, "organization name")
        with self.db.transaction() as s:
            if s.scalar(select(Organization).where(Organization.name == name)):
                raise ConflictError(f"organization {name!r} already exists")
            org = Organization(name=name)
            s.add(org)
            s.flush()
            audit.record(s, Principal.operator(org.id, actor), "org.create", "organization", org.id)
            return _org_view(org)

    def list_orgs(self) -> list[dict[str, Any]]:
        with self.db.snapshot() as s:  # a read: no write lock (the CLI runs beside serve)
            return [
                _org_view(o) for o in s.scalars(select(Organization).order_by(Organization.name))
            ]

    def org_id(self, name_or_id: str) -> str:
        """Resolve an organization given by name (or id); raises ``NotFound``."""
        with self.db.transaction() as s:
            org = s.scalar(
                select(Organization).where(
                    (Organization.name == name_or_id) | (Organization.id == name_or_id)
                )
            )
            if org is None:
                raise NotFound(
                    f"no organization {name_or_id!r}",
                    remediation="Create it with 'jackfield orgs create NAME'.",
                )
            return org.id

    # -- users and tokens ------------------------------------------------------------
    def create_user(
        self,
        email: str,
        org: str,
        role: str,
        *,
        password: str | None = None,
        with_token: bool = False,
        actor: str = "cli",
    ) -> tuple[dict[str, Any], str | None]:
        """Create a user (and its organization if missing); returns (user, new token)."""
        email = email.strip().lower()
        if not _EMAIL.match(email):
            raise InvalidAccountInput(
                f"{email!r} is not an email address", remediation="Give one like ann@example.com."
            )
        try:
            role_value = Role(role)
        except ValueError:
            raise InvalidAccountInput(f"role must be 'admin' or 'user', not {role!r}") from None
        if password is not None and len(password) < MIN_PASSWORD:
            raise InvalidAccountInput(
                f"a password needs at least {MIN_PASSWORD} characters",
                remediation="Choose a longer password.",
            )
        with self.db.transaction() as s:
            if s.scalar(select(User).where(User.email == email)):
                raise ConflictError(f"user {email!r} already exists")
            organization = s.scalar(select(Organization).where(Organization.name == org))
            if organization is None:
                organization = Organization(name=_clean_name(org, "organization name"))
                s.add(organization)
                s.flush()
            user = User(
                organization_id=organization.id,
                email=email,
                role=role_value.value,
                password_hash=hash_password(password) if password else None,
            )
            s.add(user)
            s.flush()
            token = self._issue_token(s, user, "default") if with_token else None
            who = Principal.operator(organization.id, actor)
            audit.record(s, who, "user.create", "user", user.id, details={"email": email})
            return _user_view(user, organization.name), token

    def create_token(self, email: str, name: str = "", *, actor: str = "cli") -> str:
        """A new API token of the user. Refused for a deactivated user: every request
        with the token would answer 401."""
        with self.db.transaction() as s:
            user = self._user(s, email)
            if not user.is_active:
                raise ConflictError(
                    f"user {user.email!r} is deactivated: a token of theirs would not work",
                    remediation="Create the token for an active user.",
                )
            token = self._issue_token(s, user, name)
            who = Principal.operator(user.organization_id, actor)
            audit.record(s, who, "token.create", "user", user.id, details={"name": name})
            return token

    def revoke_tokens(self, email: str, name: str | None = None, *, actor: str = "cli") -> int:
        """Delete the user's API tokens (those labelled ``name``, or all): they stop
        working at once, open event streams included (within their recheck). Returns how
        many were revoked."""
        with self.db.transaction() as s:
            user = self._user(s, email)
            query = select(ApiToken).where(ApiToken.user_id == user.id)
            tokens = s.scalars(query if name is None else query.where(ApiToken.name == name)).all()
            for token in tokens:
                s.delete(token)
            who = Principal.operator(user.organization_id, actor)
            details = {"name": name, "count": len(tokens)}
            audit.record(s, who, "token.revoke", "user", user.id, details=details)
            return len(tokens)

    def deactivate_user(self, email: str, *, actor: str = "cli") -> dict[str, Any]:
        """The user can no longer log in or use any token, and every UI session of theirs
        ends (their data and audit records stay)."""
        with self.db.transaction() as s:
            user = self._user(s, email)
            user.is_active = False
            user.sessions_ended_at = datetime.now(UTC)
            who = Principal.operator(user.organization_id, actor)
            audit.record(s, who, "user.deactivate", "user", user.id, details={"email": user.email})
            organization = s.get(Organization, user.organization_id)
            return _user_view(user, organization.name if organization else "")

    @staticmethod
    def _user(session: Session, email: str) -> User:
        user = session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise NotFound(f"no user {email!r}")
        return user

    @staticmethod
    def _issue_token(session: Session, user: User, name: str) -> str:
        token = new_token()
        session.add(ApiToken(user_id=user.id, name=name, token_hash=hash_token(token)))
        return token

    # -- authentication ----------------------------------------------------------------
    def authenticate_token(self, token: str) -> Principal:
        with self.db.transaction() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            if row is None or not row.user.is_active:
                raise AuthenticationError("invalid API token")
            now = datetime.now(UTC)
            # recorded at most once a minute: a write per request would serialize the API
            if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_GRANULARITY:
                row.last_used_at = now
            return _principal(row.user)

    def authenticate_password(self, email: str, password: str) -> Principal:
        """The user of ``email`` if ``password`` is theirs. Raises
        ``TooManyLoginAttempts`` while the email must wait after failed logins
        (``login_throttle``), else ``AuthenticationError``."""
        email = email.strip().lower()
        with self.login_throttle.attempt(email) as attempt, self.db.transaction() as s:
            user = s.scalar(select(User).where(User.email == email))
            stored = user.password_hash if user is not None and user.is_active else None
            # verified even without a user: the same cost whether the email has an account
            if not verify_password(password, stored) or user is None:
                attempt.failed()
                raise AuthenticationError("wrong email or password")
            attempt.succeeded()
            return _principal(user)

    def principal_for_user(self, user_id: str, session_issued_at: datetime) -> Principal:
        """The user of a UI session issued at ``session_issued_at`` (which the caller
        verified), unless the user is gone or ended their sessions since."""
        with self.db.transaction() as s:
            user = s.get(User, user_id)
            if user is None or not user.is_active:
                raise AuthenticationError("the session's user no longer exists")
            if user.sessions_ended_at is not None and session_issued_at < user.sessions_ended_at:
                raise AuthenticationError("this session was ended by logging out")
            return _principal(user)

    def end_sessions(self, user_id: str) -> None:
        """Void every UI session of the user issued until now (logging out: the session
        cookie is not stored, so a copy of it would stay valid until it expires)."""
        with self.db.transaction() as s:
            user = s.get(User, user_id)
            if user is not None:
                user.sessions_ended_at = datetime.now(UTC)

    def bootstrap_admin(self, password: str | None) -> BootstrapAdmin | None:
        """Create the first admin when the database has no users; ``None`` otherwise --
        also when another node starting at the same moment created it first (that node
        reports it, with its generated password)."""
        if self._has_users():
            return None
        if password is not None and len(password) < MIN_PASSWORD:
            raise InvalidAccountInput(
                f"JACKFIELD_ADMIN_PASSWORD has {len(password)} characters;"
                f" a password needs at least {MIN_PASSWORD}",
                remediation="Set it to a longer password, or unset it to have one generated.",
            )
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        try:
            self.create_user(
                BOOTSTRAP_EMAIL, BOOTSTRAP_ORG, "admin", password=password, actor="bootstrap"
            )
        except (ConflictError, IntegrityError):
            if self._has_users():  # the other node's organization or user came first
                return None
            raise
        return BootstrapAdmin(BOOTSTRAP_EMAIL, password, generated)

    def _has_users(self) -> bool:
        with self.db.snapshot() as s:
            return bool(s.scalar(select(func.count()).select_from(User)))


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _principal(user: User) -> Principal:
    return Principal(user.organization_id, user.email, Role(user.role), user.id)


def _clean_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InvalidAccountInput(f"{what} must be 1 to 200 characters")
    return name


def _org_view(org: Organization) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "created_at": iso(org.created_at)}


def _user_view(user: User, org_name: str) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "organization_id": user.organization_id,
        "organization": org_name,
        "created_at": iso(user.created_at),
    }
