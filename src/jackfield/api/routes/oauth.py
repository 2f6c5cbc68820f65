"""The OAuth2 connect flow: start (admin) and the provider's redirect back (no user auth).

The callback needs no credentials because the browser arrives from the provider; the
single-use state is the proof and ``OAuthService.callback`` checks it before anything
is exchanged. A browser (``Accept: text/html``) is sent on to the connector's page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse

from ..deps import JF, Caller
from ..schemas import AuthorizeOut, CallbackOut, error_responses

router = APIRouter(prefix="/api/connectors", tags=["oauth"])


@router.get(
    "/{connector_id}/oauth/authorize",
    response_model=AuthorizeOut,
    responses=error_responses(400, 401, 403, 404, 422),
)
def start_authorization(
    jf: JF,
    who: Caller,
    connector_id: Annotated[str, Path(max_length=100)],
) -> dict[str, Any]:
    """Start the authorization code flow (PKCE S256); open ``authorize_url`` in a browser."""
    return {"authorize_url": jf.oauth.start(who, connector_id)}


@router.get(
    "/oauth/callback/{provider_type}",
    response_model=CallbackOut,
    responses={
        303: {"description": "Redirect to the connector's page (clients accepting text/html)"},
        **error_responses(400, 404, 422),
    },
)
def authorization_callback(
    request: Request,
    jf: JF,
    provider_type: Annotated[str, Path(max_length=100)],
    state: Annotated[str, Query(max_length=300, description="{connector_uuid}:{nonce}")],
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    # any length (RFC 6749 sets none: a refusal must not become a 422); the service
    # keeps the first 300 characters
    error_description: Annotated[
        str | None, Query(description="the provider's reason for an error (any length)")
    ] = None,
) -> Any:
    """Exchange the code, store the tokens as secret params and test the connector."""
    result = jf.oauth.callback(provider_type, code, state, error, error_description)
    if "text/html" in request.headers.get("accept", ""):
        # the connector page says how it went (the url asks it to)
        return RedirectResponse(result["action"]["url"], status_code=303)
    return result
