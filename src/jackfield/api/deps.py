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
    jf = get_jackfield(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        who = jf.accounts.authenticate_token(token.strip())
    elif session_user := getattr(request.state, "session_user_id", None):
        issued_at = request.state.ui_session.issued_at  # set with session_user_id
        who = jf.accounts.principal_for_user(session_user, issued_at)
    else:
        raise AuthenticationError("authentication required")
    request.state.organization_id = who.organization_id  # whose secrets errors mask
    return who


JF = Annotated[Jackfield, Depends(get_jackfield)]
Caller = Annotated[Principal, Depends(current_principal)]
