"""Auth modes for HTTP connectors, as httpx2 ``Auth`` classes.

Each mode is an ``Auth`` so it is applied per request by the client and never baked
into default headers, where it would follow the client to any host. Auth classes record
on the request (extensions) which headers and query params they filled in: the client
drops those headers when a redirect leaves the origin (httpx2 only does that for
``Authorization``), and error messages scrub their values.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, Protocol
from urllib.parse import quote_plus, urlsplit

import httpx2

from jackfield.kernel.categories.http import FIELD_VALUE, TOKEN
from jackfield.kernel.errors import AuthError, ConnectorConfigError

from .errors import (
    CREDENTIAL_HEADERS,
    CREDENTIAL_PARAMS,
    body_excerpt,
    json_object,
    raise_for_response,
)

AUTH_MODES = (
    "none",
    "api_key",
    "basic",
    "bearer",
    "oauth2_client_credentials",
    "oauth2_authorization_code",
)
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
"""How a client authenticates at a token endpoint (RFC 6749 §2.3.1; names as in
``oauth2_http``): HTTP Basic, which every server must support, or the form body."""
DEFAULT_TOKEN_AUTH_METHOD = "client_secret_post"
"""The form body, as every client-credentials connector did before the choice existed:
a connector stored then has no ``token_auth_method`` and must keep working."""
CREDENTIAL_ORIGIN = "jackfield.credential_origin"
_CREDENTIAL_QUERY = "jackfield.credential_query"  # (name, value) pairs of a query-string key
TOKEN_REQUEST = "jackfield.token_request"
"""Request extension marking a request to an OAuth2 token endpoint (see
``refuse_token_redirect``)."""
AuthFlow = Generator[httpx2.Request, httpx2.Response, None]


def _origin(url: httpx2.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


DEFAULT_PORTS = {"http": 80, "https": 443}


def url_origin(url: str) -> tuple[str, str, int] | None:
    """Where credentials sent to ``url`` would go: its scheme, host (lower case, without
    a trailing dot) and port (the scheme's default when none is written); ``None`` when
    it names none (no scheme or host, a malformed port)."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
    if not scheme or not host:
        return None
    return scheme, host, port or DEFAULT_PORTS.get(scheme, 0)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a connector's base or endpoint URL, or ``None``: it must be
    absolute http(s), carry no credentials, and be one the HTTP client can request (a
    URL it refuses, such as ``http://0177.0.0.1/``, would fail every request instead)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an absolute http:// or https:// URL"
    if parts.username or parts.password:
        return "put credentials in their own fields, not in the URL"
    try:
        httpx2.URL(url)
    except httpx2.InvalidURL as exc:
        return f"not a valid URL: {exc}"
    return None


def _mark_credential_header(request: httpx2.Request, name: str) -> None:
    request.extensions[CREDENTIAL_ORIGIN] = _origin(request.url)
    names = tuple(request.extensions.get(CREDENTIAL_HEADERS, ()))
    request.extensions[CREDENTIAL_HEADERS] = (*names, name)


async def drop_foreign_credentials(request: httpx2.Request) -> None:
    """Request hook, run for every redirect hop: credentials go to their own origin only.

    To another origin, the credential headers are stripped (httpx2 would carry them on),
    and so is a query-string key should the ``Location`` quote it. On the same origin,
    a query-string key is put back: the redirect's ``Location`` replaces the whole query
    string, while headers are carried over, so a key in the query string was lost where
    one in a header was kept (an API redirecting to add a trailing slash answered 401).
    """
    origin = request.extensions.get(CREDENTIAL_ORIGIN)
    if origin is None:
        return
    query: tuple[tuple[str, str], ...] = request.extensions.get(_CREDENTIAL_QUERY, ())
    if origin == _origin(request.url):
        for name, value in query:
            if request.url.params.get(name) != value:
                request.url = request.url.copy_set_param(name, value)
        return
    for name in request.extensions.get(CREDENTIAL_HEADERS, ()):
        request.headers.pop(name, None)
    for name, value in query:
        if value in request.url.params.get_list(name):
            request.url = request.url.copy_remove_param(name)


async def refuse_token_redirect(response: httpx2.Response) -> None:
    """Response hook: a token endpoint's redirect is an error, unless it is a 307/308
    within the endpoint's own origin (a trailing slash added, say).

    A token request carries the client secret (form body or Basic header) and grants
    (a refresh token, an authorization code) in its body. A 307/308 would have the
    client POST that body again to wherever the ``Location`` points, another origin
    included; httpx2 strips only ``Authorization`` there, never the body. A 301/302/303
    would turn it into a GET without the grant, which no token endpoint answers. RFC
    6749 has no redirects at the token endpoint, so the fix is the configured URL.
    """
    request = response.request
    if not request.extensions.get(TOKEN_REQUEST) or not response.has_redirect_location:
        return
    target = httpx2.URL(response.headers["Location"])
    target = request.url.join(target) if target.is_relative_url else target
    if response.status_code in (307, 308) and _origin(target) == _origin(request.url):
        return  # the same body to the same server: nothing goes anywhere new
    raise AuthError(  # host and path only: a query string may carry anything
        f"the token endpoint {request.url.host}{request.url.path} answered "
        f"HTTP {response.status_code} {response.reason_phrase}, a redirect to "
        f"{target.scheme}://{target.netloc.decode('ascii')}{target.path}; token requests "
        "follow only a 307/308 within the token endpoint's origin (another would send "
        "the client secret on, or drop the grant)",
        operation="oauth2_token",
        remediation="Set the token URL to the token endpoint's own address.",
    )


class HeaderAuth(httpx2.Auth):
    """A fixed credential in one header: API keys, or ``Authorization: Bearer ...``."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._value = value

    def auth_flow(self, request: httpx2.Request) -> AuthFlow:
        request.headers[self.name] = self._value
        _mark_credential_header(request, self.name)
        yield request


def bearer_auth(token: str) -> HeaderAuth:
    return HeaderAuth("Authorization", f"Bearer {token}")


class QueryParamAuth(httpx2.Auth):
    """An API key in the query string (for APIs that accept nothing else)."""

    def __init__(self, param: str, value: str) -> None:
        self.param = param
        self._value = value

    def auth_flow(self, request: httpx2.Request) -> AuthFlow:
        request.url = request.url.copy_set_param(self.param, self._value)
        names = tuple(request.extensions.get(CREDENTIAL_PARAMS, ()))
        request.extensions[CREDENTIAL_PARAMS] = (*names, self.param)
        # for drop_foreign_credentials: put back on same-origin redirects, else dropped
        request.extensions[CREDENTIAL_ORIGIN] = _origin(request.url)
        request.extensions[_CREDENTIAL_QUERY] = ((self.param, self._value),)
        yield request


class OAuth2ClientCredentials(httpx2.Auth):
    """OAuth2 client credentials grant with a cached token.

    The token is fetched through the same client (so the egress guard and timeouts
    apply), reused until shortly before ``expires_in`` runs out, and fetched again on
    expiry or when the API answers 401. Concurrent first requests may each fetch a token;
    that is harmless (the last one wins) and keeps this class free of loop-bound locks.

    The client sends its secret in the form body (``client_secret_post``) unless told to
    use HTTP Basic (``client_secret_basic``): RFC 6749 §2.3.1 obliges servers to support
    Basic, while the form body is optional for them, so some servers refuse it.
    """

    requires_request_body = True
    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scopes: tuple[str, ...] = (),
        *,
        auth_method: str = DEFAULT_TOKEN_AUTH_METHOD,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scopes = scopes
        self.auth_method = auth_method
        self.leeway = leeway
        self._clock = clock
        self._token: str | None = None
        self._expires_at: float | None = None

    @property
    def token_valid(self) -> bool:
        if self._token is None:
            return False
        return self._expires_at is None or self._clock() < self._expires_at

    def _token_request(self, original: httpx2.Request) -> httpx2.Request:
        """The token request; it inherits the API request's timeouts and User-Agent."""
        form = {"grant_type": "client_credentials"}
        headers = {"Accept": "application/json"}
        if self.auth_method == "client_secret_post":
            form.update(client_id=self.client_id, client_secret=self._client_secret)
        else:  # id and secret are form-encoded before Basic encoding (RFC 6749 §2.3.1)
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self._client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        if "User-Agent" in original.headers:
            headers["User-Agent"] = original.headers["User-Agent"]
        extensions: dict[str, Any] = {TOKEN_REQUEST: True}
        if (timeout := original.extensions.get("timeout")) is not None:
            extensions["timeout"] = timeout
        return httpx2.Request(
            "POST", self.token_url, data=form, headers=headers, extensions=extensions
        )

    def _store(self, response: httpx2.Response) -> None:
        """Keep the token from a token endpoint response, or raise ``AuthError`` when it
        refused the client; an outage (429, 5xx, a success that is no JSON object, e.g. a
        proxy's page) raises a retryable error, since it says nothing of the credentials."""
        operation = "oauth2_token"
        secrets = (self._client_secret,)
        if response.status_code == 429 or response.status_code >= 500:
            raise_for_response(response, operation, secrets=secrets)  # retryable outage
        if response.status_code < 400:
            data = json_object(response, operation, secrets=secrets, quote=False)
        else:
            try:
                refusal: Any = response.json()
            except ValueError:
                refusal = None
            code = refusal.get("error") if isinstance(refusal, dict) else None
            excerpt = body_excerpt(response, secrets=secrets)
            raise AuthError(
                f"token endpoint refused the client credentials (HTTP {response.status_code}"
                f"{', ' + str(code) if code else ''}): {excerpt}",
                operation=operation,
                remediation="Check client_id, client_secret, token_url and scopes.",
            )
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError("token endpoint answered without an access_token", operation=operation)
        self._token = token
        expires_in = data.get("expires_in")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            margin = min(self.leeway, float(expires_in) / 2)
            self._expires_at = self._clock() + float(expires_in) - margin
        else:
            self._expires_at = None

    def auth_flow(self, request: httpx2.Request) -> AuthFlow:
        if not self.token_valid:
            self._store((yield self._token_request(request)))
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            self._store((yield self._token_request(request)))
            request.headers["Authorization"] = f"Bearer {self._token}"
            yield request


class TokenSource(Protocol):
    """Supplies a valid access token; ``force_refresh`` asks for a new one.

    The service layer implements it (refresh ahead of expiry, single-flight under a
    database lock, rotated refresh tokens persisted); this toolkit only calls it.
    """

    async def __call__(self, *, force_refresh: bool = False) -> str: ...


class OAuth2RefreshingAuth(httpx2.Auth):
    """Bearer auth from a ``TokenSource``; on 401, one forced refresh and one retry."""

    requires_request_body = True

    def __init__(self, get_access_token: TokenSource) -> None:
        self._get_access_token = get_access_token

    def sync_auth_flow(self, request: httpx2.Request) -> AuthFlow:
        raise RuntimeError("OAuth2RefreshingAuth works with httpx2.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        await request.aread()
        token = await self._get_access_token(force_refresh=False)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = await self._get_access_token(force_refresh=True)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


def _scopes(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(s) for s in value if str(s).strip())
    return tuple(s for s in str(value or "").replace(",", " ").split() if s)


_REQUIRED = {
    "api_key": ("api_key",),
    "basic": ("username",),
    "bearer": ("token",),
    "oauth2_client_credentials": ("client_id", "client_secret", "token_url"),
    "oauth2_authorization_code": ("token",),
}


def auth_config_errors(config: Mapping[str, Any], key_prefix: str = "auth.") -> dict[str, str]:
    """Field errors of an ``auth`` config group (empty when it is usable)."""
    mode = str(config.get("mode") or "none")
    if mode not in AUTH_MODES:
        return {f"{key_prefix}mode": f"unknown auth mode {mode!r} ({', '.join(AUTH_MODES)})"}
    errors = {
        f"{key_prefix}{name}": f"required when auth mode is {mode}"
        for name in _REQUIRED.get(mode, ())
        if not config.get(name)
    }
    if mode == "api_key" and str(config.get("api_key_in") or "header") not in ("header", "query"):
        errors[f"{key_prefix}api_key_in"] = "expected header or query"
    method = str(config.get("token_auth_method") or DEFAULT_TOKEN_AUTH_METHOD)
    if mode == "oauth2_client_credentials" and method not in TOKEN_AUTH_METHODS:
        errors[f"{key_prefix}token_auth_method"] = f"expected {' or '.join(TOKEN_AUTH_METHODS)}"
    errors.update(_unsendable(mode, config, key_prefix))
    token_url = str(config.get("token_url") or "")
    if mode == "oauth2_client_credentials" and token_url and (problem := url_problem(token_url)):
        # Checked at save like a base URL: before, "nope" was stored and only Test said
        # "egress to nope refused". (Only where the mode uses it: an unused value left
        # from another mode must not stop a stored connector from loading.)
        errors[f"{key_prefix}token_url"] = problem
    return errors


def _unsendable(mode: str, config: Mapping[str, Any], key_prefix: str) -> dict[str, str]:
    """Field errors of values no request can carry: checked at save, since at delivery
    they would kill every message with an error that blames the message. The texts never
    quote the value (it is a credential)."""
    errors: dict[str, str] = {}
    header_values = {"bearer": ("token",), "oauth2_authorization_code": ("token",)}.get(mode, ())
    if mode == "api_key" and str(config.get("api_key_in") or "header") == "header":
        header_values = ("api_key",)
        name = str(config.get("api_key_header") or "X-API-Key")
        if not TOKEN.fullmatch(name):
            errors[f"{key_prefix}api_key_header"] = "not a header name (letters, digits, -)"
    for field in header_values:
        if config.get(field) and not FIELD_VALUE.fullmatch(str(config[field])):
            errors[f"{key_prefix}{field}"] = (
                "holds a line break, a control character or non-ASCII text,"
                " which a request header cannot carry"
            )
    if mode == "basic" and ":" in str(config.get("username") or ""):
        errors[f"{key_prefix}username"] = "a Basic auth user name cannot hold a colon"
    return errors


def build_auth(
    config: Mapping[str, Any],
    *,
    token_source: TokenSource | None = None,
    key_prefix: str = "auth.",
) -> httpx2.Auth | None:
    """The ``Auth`` for an ``auth`` config group (``mode`` plus that mode's fields).

    In ``oauth2_authorization_code`` mode a ``token_source`` (the service's refresher)
    is used when given; otherwise ``token`` is sent as a static bearer token.
    """
    errors = auth_config_errors(config, key_prefix)
    if token_source is not None:
        errors.pop(f"{key_prefix}token", None)
    if errors:
        summary = "; ".join(f"{key}: {msg}" for key, msg in sorted(errors.items()))
        raise ConnectorConfigError(f"invalid auth configuration ({summary})", field_errors=errors)
    mode = str(config.get("mode") or "none")
    if mode == "api_key":
        key = str(config["api_key"])
        if str(config.get("api_key_in") or "header") == "query":
            return QueryParamAuth(str(config.get("api_key_param") or "api_key"), key)
        return HeaderAuth(str(config.get("api_key_header") or "X-API-Key"), key)
    if mode == "basic":
        return httpx2.BasicAuth(str(config["username"]), str(config.get("password") or ""))
    if mode == "bearer":
        return bearer_auth(str(config["token"]))
    if mode == "oauth2_client_credentials":
        return OAuth2ClientCredentials(
            str(config["token_url"]),
            str(config["client_id"]),
            str(config["client_secret"]),
            _scopes(config.get("scopes")),
            auth_method=str(config.get("token_auth_method") or DEFAULT_TOKEN_AUTH_METHOD),
        )
    if mode == "oauth2_authorization_code":
        if token_source is not None:
            return OAuth2RefreshingAuth(token_source)
        return bearer_auth(str(config["token"]))
    return None
