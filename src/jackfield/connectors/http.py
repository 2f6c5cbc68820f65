"""The generic REST provider (``http``): one base URL, one auth mode, operation ``request``.

The HTTP client, auth modes, egress guard and error translation come from
``jackfield.integration``; they are imported inside methods so that loading this module
(the registry does, to list providers) imports no HTTP library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from jackfield.kernel.categories.http import HttpProvider, HttpRequest, HttpResponse
from jackfield.kernel.config import ConfigField, FieldType
from jackfield.kernel.errors import ConnectorConfigError, ConnectorError
from jackfield.kernel.provider import ConnectionTestResult, Tier

if TYPE_CHECKING:
    import httpx2

AUTH_MODES = (
    "none",
    "api_key",
    "basic",
    "bearer",
    "oauth2_client_credentials",
    "oauth2_authorization_code",
)

MAX_RESPONSE_BYTES = 1024 * 1024
"""How much of a response body ``request`` reads (1 MiB); the rest is not read. A
delivery result keeps 64 KiB of it (``RESULT_BODY_LIMIT``); the body is streamed, so a
huge answer costs no more memory than this (a 400 MB one took ~1 GB before)."""

_SCHEMA = [
    ConfigField(
        "base_url", "Base URL", required=True, help="e.g. https://api.example.com/v1", origin=True
    ),
    ConfigField("health_path", "Health check path", help="GET by Test; default: the base URL"),
    ConfigField("timeout_seconds", "Timeout (seconds)", type=FieldType.INTEGER, default=30),
    ConfigField(
        "auth.mode", "Authentication", type=FieldType.SELECT, default="none", choices=AUTH_MODES
    ),
    ConfigField("auth.api_key", "API key", secret=True),
    ConfigField("auth.api_key_header", "API key header", default="X-API-Key"),
    ConfigField(
        "auth.api_key_in",
        "Send API key in",
        type=FieldType.SELECT,
        default="header",
        choices=("header", "query"),
    ),
    ConfigField("auth.api_key_param", "API key query parameter", default="api_key"),
    ConfigField("auth.username", "Username"),
    ConfigField("auth.password", "Password", secret=True),
    ConfigField("auth.token", "Bearer / access token", secret=True),
    ConfigField("auth.client_id", "OAuth2 client ID"),
    ConfigField("auth.client_secret", "OAuth2 client secret", secret=True),
    ConfigField("auth.token_url", "OAuth2 token URL", origin=True),
    ConfigField("auth.scopes", "OAuth2 scopes", help="space- or comma-separated"),
    ConfigField(
        "auth.token_auth_method",
        "OAuth2 client authentication at the token endpoint",
        type=FieldType.SELECT,
        default="client_secret_post",  # (as before the choice: stored connectors keep it)
        choices=("client_secret_basic", "client_secret_post"),
        help="client_secret_post (form body) or client_secret_basic (HTTP Basic, RFC 6749)",
    ),
    ConfigField("auth.refresh_token", "OAuth2 refresh token", secret=True),
]


def _is_relative(path: str) -> bool:
    """Whether ``path`` stays on the base URL's origin: no scheme, no host, no ``//``."""
    parts = urlsplit(path)
    return not (parts.scheme or parts.netloc or path.startswith("//"))


class HttpRestProvider(HttpProvider):
    """Requests against one REST API. Payload: ``{method, path, headers, params, json|body}``.

    ``path`` is relative to ``base_url``; an absolute URL is refused so a payload cannot
    send the configured credentials to another host.

    A body longer than ``MAX_RESPONSE_BYTES`` is cut there and the response (and the
    delivery result) says ``truncated``, rather than failing: the request was carried
    out (a POST did its work), so a dead message -- and a replay that would do it
    again -- would be worse than an answer that says it is incomplete.
    """

    provider_type: ClassVar[str] = "http"
    display_name: ClassVar[str] = "HTTP (generic REST)"
    tier: ClassVar[Tier] = Tier.SUPPORTED
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._auth: httpx2.Auth | None = None
        self._auth_built = False
        self._client: httpx2.AsyncClient | None = None

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return list(_SCHEMA)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        from jackfield.integration import auth_config_errors, url_origin, url_problem

        result = super().validate_config(config)
        errors: dict[str, str] = {}
        problem = url_problem(str(result["base_url"]))
        if problem:
            errors["base_url"] = problem
        health = str(result.get("health_path") or "")
        if not _is_relative(health) and url_origin(health) != url_origin(str(result["base_url"])):
            # Test sends the connector's credentials with the health check: a URL of
            # another origin would hand them over, as a payload path would. (An absolute
            # URL on the base URL's origin, stored before this rule, still works.)
            errors["health_path"] = "must be a path relative to the base URL"
        if int(result.get("timeout_seconds") or 0) <= 0:
            errors["timeout_seconds"] = "must be a positive number of seconds"
        errors.update(auth_config_errors(result.get("auth") or {}))
        if errors:
            raise ConnectorConfigError.for_fields(errors)
        return result

    # -- client --------------------------------------------------------------------
    def _get_auth(self) -> httpx2.Auth | None:
        """Built once per instance so a client-credentials token outlives each client."""
        if not self._auth_built:
            from jackfield.integration import build_auth

            self._auth = build_auth(self.config.get("auth") or {})
            self._auth_built = True
        return self._auth

    def _new_client(self) -> httpx2.AsyncClient:
        from jackfield.integration import create_client

        return create_client(
            str(self.config["base_url"]),
            auth=self._get_auth(),
            timeout=float(self.config.get("timeout_seconds") or 30),
        )

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx2.AsyncClient]:
        """The open client, or a short-lived one when ``open()`` was not called."""
        if self._client is not None:
            yield self._client
            return
        async with self._new_client() as client:
            yield client

    async def open(self) -> None:
        if self._client is None:
            self._client = self._new_client()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- operations ------------------------------------------------------------------
    async def request(self, request: HttpRequest) -> HttpResponse:
        import httpx2

        from jackfield.integration import (
            BODY_TRUNCATED,
            request_secrets,
            translate_transport_errors,
        )
        from jackfield.integration import request as send

        if not _is_relative(request.path):
            raise ConnectorConfigError(
                "payload field 'path' must be relative to the connector's base URL",
                operation="request",
            )
        # params add to a query string in the path (httpx would replace it); a path
        # httpx cannot parse is a PermanentError, like any URL it refuses
        with translate_transport_errors("request"):
            url = httpx2.URL(request.path).copy_merge_params(request.params)
        kwargs: dict[str, Any] = {"headers": request.headers}
        if request.json is not None:
            kwargs["json"] = request.json
        elif request.body is not None:
            kwargs["content"] = request.body
        async with self._session() as client:
            response = await send(
                client, request.method, url, max_body=MAX_RESPONSE_BYTES, truncate=True, **kwargs
            )
        return HttpResponse(
            status=response.status_code,
            headers=dict(response.headers),
            body=response.content,
            credentials=frozenset(request_secrets(response.request)),
            truncated=bool(response.extensions.get(BODY_TRUNCATED)),
        )

    async def test_connection(self) -> ConnectionTestResult:
        from jackfield.integration import request as send

        path = str(self.config.get("health_path") or "")
        host = urlsplit(str(self.config["base_url"])).hostname
        try:
            async with self._session() as client:
                response = await send(client, "GET", path, operation="test_connection")
        except ConnectorError as exc:
            details = {"code": exc.code, "remediation": exc.remediation}
            return ConnectionTestResult(False, exc.message, details)
        return ConnectionTestResult(
            True, f"{host} answered HTTP {response.status_code}", {"status": response.status_code}
        )
