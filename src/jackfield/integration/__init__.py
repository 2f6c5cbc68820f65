"""Toolkit for provider authors (see DESIGN.md §2): the HTTP client, auth modes, error
translation and the egress (SSRF) guard. Imports only ``jackfield.kernel``."""

from .auth import (
    AUTH_MODES,
    TOKEN_REQUEST,
    HeaderAuth,
    OAuth2ClientCredentials,
    OAuth2RefreshingAuth,
    QueryParamAuth,
    TokenSource,
    auth_config_errors,
    bearer_auth,
    build_auth,
    drop_foreign_credentials,
    refuse_token_redirect,
    url_origin,
    url_problem,
)
from .client import MAX_REDIRECTS, create_client, exchange, request, user_agent
from .egress import (
    ALLOWLIST_ENV,
    EgressDeniedError,
    EgressGuardTransport,
    EgressPolicy,
    classify,
)
from .errors import (
    body_excerpt,
    parse_retry_after,
    raise_for_response,
    redact,
    request_secrets,
    translate_transport_errors,
)

__all__ = [
    "ALLOWLIST_ENV",
    "AUTH_MODES",
    "MAX_REDIRECTS",
    "TOKEN_REQUEST",
    "EgressDeniedError",
    "EgressGuardTransport",
    "EgressPolicy",
    "HeaderAuth",
    "OAuth2ClientCredentials",
    "OAuth2RefreshingAuth",
    "QueryParamAuth",
    "TokenSource",
    "auth_config_errors",
    "bearer_auth",
    "body_excerpt",
    "build_auth",
    "classify",
    "create_client",
    "drop_foreign_credentials",
    "exchange",
    "parse_retry_after",
    "raise_for_response",
    "redact",
    "refuse_token_redirect",
    "request",
    "request_secrets",
    "translate_transport_errors",
    "url_origin",
    "url_problem",
    "user_agent",
]
