"""REST APIs behind the OAuth2 authorization code flow (``oauth2_http``), and the flow
itself as a mixin (``OAuth2CodeFlow``) that other OAuth providers reuse (Google Drive).

The mixin implements the kernel's OAuth hooks against a standard token endpoint
(RFC 6749 §4.1.3 and §6, PKCE per RFC 7636): the service layer owns state, storage,
locking and refresh timing; this module only speaks HTTP, through
``jackfield.integration`` (egress guard, timeouts, error translation). Token endpoint
answers become the params the service stores: ``oauth.access_token``,
``oauth.refresh_token`` (secret), ``oauth.expires_at`` (Unix seconds), ``oauth.scope``,
``oauth.token_type``. HTTP libraries are imported inside functions so that loading this
module (the registry does, to list providers) stays light.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import quote_plus

from jackfield.kernel.config import ConfigField, FieldType
from jackfield.kernel.errors import AuthError, ConnectorConfigError
from jackfield.kernel.provider import (
    OAUTH_FLOW_KEY,
    Capability,
    OAuthAuthorization,
    Tier,
    TokenSourceFn,
    oauth_not_connected,
)

from .http import HttpRestProvider

if TYPE_CHECKING:
    import httpx2

TOKEN_TIMEOUT = 15.0
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

TOKEN_FIELDS = [
    ConfigField("oauth.access_token", "Access token", secret=True, help="set by Connect"),
    ConfigField("oauth.refresh_token", "Refresh token", secret=True, help="set by Connect"),
    ConfigField(
        "oauth.expires_at",
        "Access token expiry",
        type=FieldType.INTEGER,
        read_only=True,
        unix_time=True,
    ),
    ConfigField(
        "oauth.issued_at",
        "Access token issue time",
        type=FieldType.INTEGER,
        help="set by the service; refresh happens at most half the lifetime early",
        read_only=True,
        unix_time=True,
    ),
    ConfigField("oauth.token_type", "Token type", read_only=True),
    ConfigField("oauth.scope", "Granted scopes", read_only=True),
]
"""Where the tokens live; a provider using the flow adds these to its schema. The
bookkeeping after the tokens is what the token endpoint said: read-only in forms."""


def url_problem(url: str) -> str | None:
    """``jackfield.integration.url_problem``, imported when first needed (see above)."""
    from jackfield.integration import url_problem as problem

    return problem(url)


def split_scopes(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(s) for s in value if str(s).strip())
    return tuple(s for s in str(value or "").replace(",", " ").split() if s)


class OAuth2CodeFlow:
    """The kernel's OAuth hooks for a standard token endpoint, plus an authorized
    ``httpx2.Auth`` for instances. Config keys: ``authorize_url``, ``token_url``,
    ``client_id``, ``client_secret``, ``scopes`` (defaults from class attributes)."""

    default_authorize_url: ClassVar[str] = ""
    default_token_url: ClassVar[str] = ""
    default_token_auth_method: ClassVar[str] = "client_secret_basic"
    oauth_extra_params: ClassVar[dict[str, str]] = {}
    provider_type: ClassVar[str]
    config: Mapping[str, Any]
    token_source: TokenSourceFn | None

    @classmethod
    def _setting(cls, config: Mapping[str, Any], key: str, default: str = "") -> str:
        value = config.get(key)
        return str(value).strip() if value not in (None, "") else default

    @classmethod
    def oauth_authorization(cls, config: Mapping[str, Any]) -> OAuthAuthorization:
        authorize_url = cls._setting(config, "authorize_url", cls.default_authorize_url)
        client_id = cls._setting(config, "client_id")
        errors: dict[str, str] = {}
        if url_problem(authorize_url):
            errors["authorize_url"] = "expected an absolute http(s) URL"
        if not client_id:
            errors["client_id"] = "required to connect"
        if errors:
            raise ConnectorConfigError(
                "the connector cannot start an OAuth2 authorization yet", field_errors=errors
            )
        return OAuthAuthorization(
            authorize_url=authorize_url,
            token_url=cls._setting(config, "token_url", cls.default_token_url),
            client_id=client_id,
            scopes=split_scopes(config.get("scopes")),
            extra_params=dict(cls.oauth_extra_params),
        )

    @classmethod
    async def exchange_oauth_code(cls, code: str, config: Mapping[str, Any]) -> dict[str, Any]:
        flow = config.get(OAUTH_FLOW_KEY) or {}
        form = {"grant_type": "authorization_code", "code": code}
        form["redirect_uri"] = str(flow.get("redirect_uri") or "")
        if flow.get("code_verifier"):
            form["code_verifier"] = str(flow["code_verifier"])
        return await cls._token_grant(config, form, "the authorization code")

    @classmethod
    async def refresh_oauth_token(
        cls, refresh_token: str, config: Mapping[str, Any]
    ) -> dict[str, Any]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await cls._token_grant(config, form, "the refresh token")

    @classmethod
    async def _token_grant(
        cls, config: Mapping[str, Any], form: dict[str, str], what: str
    ) -> dict[str, Any]:
        token_url = cls._setting(config, "token_url", cls.default_token_url)
        if url_problem(token_url):
            raise ConnectorConfigError(
                "the token URL is not usable", field_errors={"token_url": "expected a URL"}
            )
        body = await call_token_endpoint(
            token_url,
            form,
            client_id=cls._setting(config, "client_id"),
            client_secret=cls._setting(config, "client_secret"),
            auth_method=cls._setting(config, "token_auth_method", cls.default_token_auth_method),
            what=what,
        )
        return token_config(body, now=time.time())

    def oauth_auth(self) -> httpx2.Auth:
        """Bearer auth from the token source (refreshing), or the stored access token."""
        from jackfield.integration import OAuth2RefreshingAuth, TokenSource, bearer_auth

        if self.token_source is not None:
            return OAuth2RefreshingAuth(cast(TokenSource, self.token_source))
        token = (self.config.get("oauth") or {}).get("access_token")
        if not token:
            raise oauth_not_connected()
        return bearer_auth(str(token))


async def call_token_endpoint(
    token_url: str,
    form: dict[str, str],
    *,
    client_id: str,
    client_secret: str,
    auth_method: str = "client_secret_basic",
    what: str = "the grant",
) -> dict[str, Any]:
    """POST a grant to a token endpoint; the JSON answer, or the kernel error it means.

    The client authenticates with HTTP Basic (form-encoded id and secret, RFC 6749
    §2.3.1) or in the form body (``client_secret_post``). A redirect, unless a 307/308
    within the endpoint's origin, raises ``AuthError`` (it would carry the secret and the
    grant on, or drop the grant). A 400/401 answer (e.g.
    ``invalid_grant``) raises ``AuthError``: trying again will not help. 429 and 5xx
    raise retryable errors, and so does a success whose body is no JSON object (a proxy
    or captive portal page, a cut body): it says nothing about the credentials.
    """
    from jackfield.integration import (
        TOKEN_REQUEST,
        create_client,
        exchange,
        json_object,
        raise_for_response,
        redact,
    )

    operation = "oauth2_token"
    data = dict(form)
    headers = {"Accept": "application/json"}
    if auth_method == "client_secret_post" or not client_secret:
        data["client_id"] = client_id
        if client_secret:
            data["client_secret"] = client_secret
    else:
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    secrets = [v for v in (client_secret, *form.values()) if v and len(v) >= 4]
    async with create_client(timeout=TOKEN_TIMEOUT) as client:
        response = await exchange(  # within TOKEN_TIMEOUT in all; see refuse_token_redirect
            client,
            "POST",
            token_url,
            operation=operation,
            data=data,
            headers=headers,
            extensions={TOKEN_REQUEST: True},
        )
    if response.status_code == 429 or response.status_code >= 500:
        raise_for_response(response, operation, secrets=secrets)
    if response.status_code < 400:
        body = json_object(response, operation, secrets=secrets, quote=False)
    else:
        try:
            refusal: Any = response.json()
        except ValueError:
            refusal = None
        error = refusal.get("error") if isinstance(refusal, dict) else None
        description = refusal.get("error_description") if isinstance(refusal, dict) else None
        detail = ", ".join(str(x) for x in (error, description) if x) or "no error code"
        detail = redact(detail, secrets, limit=300)  # masked, then cut
        raise AuthError(
            f"the token endpoint refused {what} (HTTP {response.status_code}: {detail})",
            operation=operation,
            remediation="Check client_id, client_secret and token_url, then reconnect.",
        )
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise AuthError("the token endpoint answered without an access_token", operation=operation)
    return body


def token_config(body: Mapping[str, Any], *, now: float) -> dict[str, Any]:
    """The params to store from a token response. A response without ``refresh_token``
    leaves it out, so the stored one is kept; an unknown expiry is stored as empty."""
    oauth: dict[str, Any] = {
        "access_token": str(body["access_token"]),
        "token_type": str(body.get("token_type") or "Bearer"),
        "expires_at": "",
    }
    refresh = body.get("refresh_token")
    if isinstance(refresh, str) and refresh:
        oauth["refresh_token"] = refresh
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float | str) and not isinstance(expires_in, bool):
        try:
            oauth["expires_at"] = int(now + float(expires_in))
        except (TypeError, ValueError):
            pass  # no usable expiry: the token is used until the API answers 401
    if isinstance(body.get("scope"), str):
        oauth["scope"] = body["scope"]
    return {"oauth": oauth}


_SCHEMA = [
    ConfigField(
        "base_url", "Base URL", required=True, help="e.g. https://api.example.com/v1", origin=True
    ),
    ConfigField("authorize_url", "Authorization URL", required=True),
    ConfigField("token_url", "Token URL", required=True, origin=True),
    ConfigField("client_id", "Client ID", required=True),
    ConfigField("client_secret", "Client secret", secret=True),
    ConfigField("scopes", "Scopes", help="space- or comma-separated"),
    ConfigField(
        "token_auth_method",
        "Client authentication at the token endpoint",
        type=FieldType.SELECT,
        default="client_secret_basic",
        choices=TOKEN_AUTH_METHODS,
    ),
    ConfigField("health_path", "Health check path", help="GET by Test; default: the base URL"),
    ConfigField("timeout_seconds", "Timeout (seconds)", type=FieldType.INTEGER, default=30),
    *TOKEN_FIELDS,
]


class OAuth2HttpProvider(OAuth2CodeFlow, HttpRestProvider):
    """Requests against one REST API with a user-authorized OAuth2 access token.

    Payload and behaviour are the generic ``http`` provider's (operation ``request``,
    paths relative to ``base_url``); the bearer token comes from the token source (the
    service refreshes it), and a 401 triggers one forced refresh and one retry.
    """

    provider_type: ClassVar[str] = "oauth2_http"
    display_name: ClassVar[str] = "HTTP (OAuth2 authorization code)"
    tier: ClassVar[Tier] = Tier.SUPPORTED
    capabilities: ClassVar[frozenset[str]] = frozenset({Capability.OAUTH2})

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return list(_SCHEMA)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        result = super().validate_config(config)
        errors = {
            key: problem
            for key in ("authorize_url", "token_url")
            if (problem := url_problem(str(result[key])))
        }
        if errors:
            raise ConnectorConfigError.for_fields(errors)
        return result

    def _get_auth(self) -> httpx2.Auth | None:
        if not self._auth_built:
            self._auth = self.oauth_auth()
            self._auth_built = True
        return self._auth
