"""Request dependencies: the application and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..app import Jackfield
from ..kernel.errors import AuthenticationError
from ..service import Principal


def get_jackfield(request: Request) -> Jackfield:
    jf: Jackfield = request.app.state.jackfield
    return jf


def current_principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (or the UI's session cookie)."""
    who: Principal | None = getattr(request.state, "principal", None)  # CredentialsFirst's
    if who is None:
        who = authenticate(get_jackfield(request), request)
    request.state.organization_id = who.organization_id  # whose secrets errors mask
    return who


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if that is what it is."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(jf: Jackfield, request: Request) -> Principal:
    """The caller of ``request``, looked up now (a long response checks it again: the
    token may have been removed, the session ended by logging out, since it began)."""
    if token := bearer_token(request.headers.get("authorization", "")):
        return jf.accounts.authenticate_token(token)
    if session_user := getattr(request.state, "session_user_id", None):
        issued_at = request.state.ui_session.issued_at  # set with session_user_id
        return jf.accounts.principal_for_user(session_user, issued_at)
    raise missing_credentials(getattr(request.state, "session_needs_csrf", False))


def missing_credentials(session_needs_csrf: bool) -> AuthenticationError:
    """The 401 of a request without usable credentials. A logged-in browser's write
    whose CSRF header is missing or wrong is told so: "authentication required" read as
    being logged out."""
    if session_needs_csrf:
        return AuthenticationError(
            "a write with the UI's session cookie needs its CSRF token",
            remediation="Send the page's CSRF token in the X-CSRF-Token header, or use an"
            " API token (Authorization: Bearer).",
        )
    return AuthenticationError("authentication required")


JF = Annotated[Jackfield, Depends(get_jackfield)]
Caller = Annotated[Principal, Depends(current_principal)]
