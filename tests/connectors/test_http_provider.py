"""The generic ``http`` provider against a real ASGI app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from jackfield.connectors.http import MAX_RESPONSE_BYTES, HttpRestProvider
from jackfield.connectors.oauth2_http import call_token_endpoint
from jackfield.kernel import (
    AuthError,
    AuthFailed,
    ConnectionTestResult,
    ConnectorConfigError,
    Delivered,
    Envelope,
    HttpRequest,
    Permanent,
    PermanentError,
    Retry,
    RetryClass,
    Tier,
    TransientError,
    connector_registry,
)
from jackfield.kernel.categories.http import RESULT_BODY_LIMIT
from jackfield.testing import LiveServer

API_KEY = "key-51d0c3-very-secret"
PASSWORD = "pw-9e8d7c-secret"
CLIENT_SECRET = "cs-1a2b3c-secret"
STATE: dict[str, Any] = {}


async def echo(request: Request) -> Response:
    STATE["hits"] += 1
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "headers": dict(request.headers),
            "query": dict(request.query_params),
            "body": (await request.body()).decode(),
        }
    )


async def status(request: Request) -> Response:
    """Answers the status asked for, echoing the request headers and query back."""
    code = int(request.path_params["code"])
    headers = {"Retry-After": "42"} if code in (429, 503) else {}
    seen = {"headers": dict(request.headers), "query": dict(request.query_params)}
    return JSONResponse({"error": "nope", "seen": seen}, code, headers=headers)


async def token(request: Request) -> Response:
    STATE["token_hits"] += 1
    form = dict(await request.form())
    if form.get("client_secret") != CLIENT_SECRET:
        return JSONResponse(
            {"error": "invalid_client", "error_description": f"{form.get('client_secret')}"}, 401
        )
    STATE["token_requests"] += 1
    return JSONResponse({"access_token": f"cc-{STATE['token_requests']}", "expires_in": 3600})


async def padded_token(request: Request) -> Response:
    """Refuses a grant, quoting the posted client_secret (or else refresh token) after
    ``pad`` characters."""
    form = dict(await request.form())
    quoted = form.get("client_secret") or form.get("refresh_token") or ""
    said = "x" * int(request.path_params["pad"]) + quoted
    return JSONResponse({"error": "invalid_grant", "error_description": said}, 400)


async def portal_token(request: Request) -> Response:
    """What a captive portal or a broken proxy answers a token request with: 200 and an
    HTML page, here quoting the posted secret (or else refresh token) back."""
    form = dict(await request.form())
    quoted = form.get("client_secret") or form.get("refresh_token") or ""
    return Response(f"<html><body>Please sign in ({quoted})</body></html>", 200)


NEW_TOKENS = ("at-7f6e5d-issued-access", "rt-4c3b2a-issued-refresh")


async def cut_token(request: Request) -> Response:
    """A token answer cut short on the way (a proxy, a dropped connection): the start of
    the JSON the endpoint sent, newly issued tokens included."""
    access, refresh = NEW_TOKENS
    return Response(f'{{"access_token": "{access}", "refresh_token": "{refresh}", "exp', 200)


async def token_basic_only(request: Request) -> Response:
    """A token endpoint that, as RFC 6749 §2.3.1 allows, takes client credentials only
    by HTTP Basic (id and secret form-encoded first) and refuses them in the body."""
    form = dict(await request.form())
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme != "Basic" or "client_secret" in form:
        return JSONResponse({"error": "invalid_client"}, 401)
    client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    if (unquote_plus(client_id), unquote_plus(secret)) != ("c:id", CLIENT_SECRET + "+&"):
        return JSONResponse({"error": "invalid_client"}, 401)
    STATE["token_requests"] += 1
    return JSONResponse({"access_token": "cc-1", "expires_in": 3600, "token_type": "Bearer"})


async def quote_url(request: Request) -> Response:
    """Refuses the request, quoting its URL -- query string and all -- as APIs do."""
    return JSONResponse({"error": f"invalid request {request.url}"}, 400)


async def redirect(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"], int(request.query_params["code"]))


async def drip(request: Request) -> Response:
    """40 bytes, one every 0.1 s: each read is quick, the whole response is slow."""

    async def body() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x"
            await asyncio.sleep(0.1)

    return StreamingResponse(body())


async def huge(request: Request) -> Response:
    """``?mb=N`` megabytes of ``a``, streamed."""
    mb = int(request.query_params["mb"])

    async def body() -> AsyncIterator[bytes]:
        for _ in range(mb * 16):
            yield b"a" * (64 * 1024)

    return StreamingResponse(body(), headers={"Content-Length": str(mb * 1024 * 1024)})


async def needs_token(request: Request) -> Response:
    if request.headers.get("authorization") != "Bearer cc-1":
        return JSONResponse({"error": "invalid_token"}, 401)
    return JSONResponse({"ok": True})


APP = Starlette(
    routes=[
        Route("/api/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/api/status/{code:int}", status, methods=["GET", "POST"]),
        Route("/api/health", echo),
        Route("/api/cc", needs_token),
        Route("/api/quote-url", quote_url),
        Route("/token", token, methods=["POST"]),
        Route("/token/basic", token_basic_only, methods=["POST"]),
        Route("/token/portal", portal_token, methods=["POST"]),
        Route("/token/cut", cut_token, methods=["POST"]),
        Route("/token/padded/{pad:int}", padded_token, methods=["POST"]),
        Route("/redirect", redirect, methods=["POST"]),
        Route("/api/drip", drip, methods=["POST"]),
        Route("/api/huge", huge, methods=["GET", "POST"]),
    ]
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """uvicorn serving APP on a free 127.0.0.1 port in a background thread."""
    with LiveServer(APP, lifespan="off") as live:
        yield live.url


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1")
    STATE.clear()
    STATE.update(hits=0, token_requests=0, token_hits=0)


def make(server: str, **auth: Any) -> HttpRestProvider:
    config: dict[str, Any] = {"base_url": f"{server}/api", "auth": auth}
    return HttpRestProvider.from_config(config)


def envelope(payload: dict[str, Any], operation: str = "request") -> Envelope:
    return Envelope(
        envelope_id="01J0000000000000000000000",
        connector_id="c1",
        operation=operation,
        payload=payload,
    )


def _no_secrets(text: str) -> None:
    for secret in (API_KEY, PASSWORD, CLIENT_SECRET):
        assert secret not in text


# -- metadata and config ---------------------------------------------------------------
def test_metadata_and_schema() -> None:
    assert HttpRestProvider.provider_type == "http"
    assert HttpRestProvider.category == "http"
    assert HttpRestProvider.display_name == "HTTP (generic REST)"
    assert HttpRestProvider.tier is Tier.SUPPORTED
    fields = {f.key: f for f in HttpRestProvider.config_schema()}
    assert fields["base_url"].required
    assert fields["auth.mode"].choices == (
        "none",
        "api_key",
        "basic",
        "bearer",
        "oauth2_client_credentials",
        "oauth2_authorization_code",
    )
    assert fields["auth.mode"].default == "none"
    assert fields["auth.api_key_header"].default == "X-API-Key"
    assert fields["auth.api_key_in"].choices == ("header", "query")
    assert fields["timeout_seconds"].default == 30
    secret = {k for k, f in fields.items() if f.secret}
    assert secret == {
        "auth.api_key",
        "auth.password",
        "auth.token",
        "auth.client_secret",
        "auth.refresh_token",
    }


def test_registers_in_a_registry() -> None:
    registry = type(connector_registry)()
    registry.register(HttpRestProvider)
    assert registry.get("http", "http") is HttpRestProvider


def test_module_import_does_not_import_http_library() -> None:
    code = (
        "import sys, jackfield.connectors.http as m; m.HttpRestProvider.config_schema(); "
        "assert 'httpx2' not in sys.modules, 'httpx2 imported'; "
        "assert 'jackfield.integration' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_defaults_applied() -> None:
    provider = HttpRestProvider.from_config({"base_url": "https://api.example.com"})
    assert provider.config["auth"]["mode"] == "none"
    assert provider.config["timeout_seconds"] == 30


UNSENDABLE_AUTH = [
    (
        {"base_url": "https://x.io", "auth": {"mode": "bearer", "token": "S3CR3T\nX-Evil: 1"}},
        "auth.token",
    ),
    (
        {"base_url": "https://x.io", "auth": {"mode": "api_key", "api_key": "S3CR3T\r\n"}},
        "auth.api_key",
    ),
    (
        {
            "base_url": "https://x.io",
            "auth": {"mode": "api_key", "api_key": "S3CR3T", "api_key_header": "X Key"},
        },
        "auth.api_key_header",
    ),
    (
        {"base_url": "https://x.io", "auth": {"mode": "basic", "username": "S3CR3T:x"}},
        "auth.username",
    ),
]
"""Auth values no HTTP request can carry (the secret part is S3CR3T)."""


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "base_url"),
        ({"base_url": "ftp://example.com"}, "base_url"),
        ({"base_url": "example.com/api"}, "base_url"),
        ({"base_url": "https://u:p@example.com"}, "base_url"),
        ({"base_url": "https://x.io", "timeout_seconds": "0"}, "timeout_seconds"),
        ({"base_url": "https://x.io", "auth": {"mode": "magic"}}, "auth.mode"),
        ({"base_url": "https://x.io", "auth": {"mode": "api_key"}}, "auth.api_key"),
        ({"base_url": "https://x.io", "auth": {"mode": "basic"}}, "auth.username"),
        ({"base_url": "https://x.io", "auth": {"mode": "bearer"}}, "auth.token"),
        (
            {"base_url": "https://x.io", "auth": {"mode": "oauth2_client_credentials"}},
            "auth.client_secret",
        ),
        *(
            (
                {
                    "base_url": "https://x.io",
                    "auth": {
                        "mode": "oauth2_client_credentials",
                        "client_id": "c",
                        "client_secret": "s",
                        "token_url": url,
                    },
                },
                "auth.token_url",
            )
            for url in ("nope", "ftp://x.io/token", "https://u:p@x.io/token")
        ),
        *UNSENDABLE_AUTH,
    ],
)
def test_invalid_config(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConnectorConfigError) as info:
        HttpRestProvider.from_config(config)
    assert field in info.value.field_errors


@pytest.mark.parametrize(("config", "field"), UNSENDABLE_AUTH)
def test_credentials_no_request_can_carry_are_refused_without_quoting_them(
    config: dict[str, Any], field: str
) -> None:
    """Before, such a value was saved, the unit stayed ready and every message died at
    delivery with "Correct the request (method, path, headers)", though the fault was
    the connector's: a header cannot hold a line break, a header name cannot hold a
    space, and a Basic user-id cannot hold a colon."""
    with pytest.raises(ConnectorConfigError) as info:
        HttpRestProvider.from_config(config)
    assert field in info.value.field_errors
    assert "S3CR3T" not in str(info.value) + str(info.value.field_errors)


def test_a_url_the_client_cannot_request_is_refused_when_saved() -> None:
    """Before, it was stored, and every Test and delivery crashed on it (InvalidURL)."""
    with pytest.raises(ConnectorConfigError) as info:
        HttpRestProvider.from_config({"base_url": "http://0177.0.0.1:8080/"})
    assert info.value.field_errors["base_url"] == (
        "not a valid URL: Invalid IPv4 address: '0177.0.0.1'"
    )


@pytest.mark.parametrize(
    "path", ["{other}/api/health", "//127.0.0.1:{port}/api/health", "HTTP://x.io/"]
)
async def test_an_absolute_health_path_is_refused_and_nothing_reaches_the_other_origin(
    server: str, path: str
) -> None:
    """Before, Test sent the bearer token to whatever origin ``health_path`` named."""
    with LiveServer(APP, lifespan="off") as other:
        port = other.url.rsplit(":", 1)[1]
        config = {
            "base_url": f"{server}/api",
            "health_path": path.format(other=other.url, port=port),
            "auth": {"mode": "bearer", "token": API_KEY},
        }
        with pytest.raises(ConnectorConfigError) as info:
            await HttpRestProvider.from_config(config).test_connection()
    assert "relative" in info.value.field_errors["health_path"]
    assert STATE["hits"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "health",
        "/health?deep=1",
        "",
        # the base URL's own origin (stored before the rule; its connector keeps working)
        "https://x.io/status",
        "https://X.io:443/api/health",
    ],
)
def test_a_health_path_on_the_base_urls_origin_is_accepted(path: str) -> None:
    HttpRestProvider.from_config({"base_url": "https://x.io/api", "health_path": path})


# -- the request operation through deliver ---------------------------------------------
async def test_deliver_request_delivered(server: str) -> None:
    provider = make(server)
    payload = {"method": "post", "path": "/echo", "json": {"a": 1}, "params": {"q": "x"}}
    outcome = await provider.deliver(envelope(payload))
    assert isinstance(outcome, Delivered)
    assert outcome.result["status"] == 200
    seen = json.loads(outcome.result["body"])  # the delivery result keeps the response
    assert (seen["method"], seen["query"], json.loads(seen["body"])) == (
        "POST",
        {"q": "x"},
        {"a": 1},
    )
    assert STATE["hits"] == 1


async def test_a_query_string_in_the_path_is_kept_and_params_add_to_it(server: str) -> None:
    provider = make(server)
    for payload, query in [
        ({"path": "/echo?page=2&status=open"}, {"page": "2", "status": "open"}),
        ({"path": "/echo?page=2", "params": {"limit": "5"}}, {"page": "2", "limit": "5"}),
    ]:
        outcome = await provider.deliver(envelope(payload))
        assert isinstance(outcome, Delivered)
        assert json.loads(outcome.result["body"])["query"] == query


@pytest.mark.parametrize(
    "auth",
    [
        {"mode": "basic", "username": "ada", "password": PASSWORD},
        {"mode": "bearer", "token": API_KEY},
        {"mode": "api_key", "api_key": API_KEY, "api_key_in": "query", "api_key_param": "k"},
    ],
)
async def test_a_result_does_not_keep_the_credentials_a_server_quotes_back(
    server: str, auth: dict[str, str]
) -> None:
    """The echo server answers with the request's headers and query: the stored result
    must not carry them in any form (Basic auth is base64 of ``user:password``)."""
    outcome = await make(server, **auth).deliver(envelope({"path": "/echo"}))
    assert isinstance(outcome, Delivered)
    stored = json.dumps(outcome.result)
    basic = base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
    _no_secrets(stored)
    assert basic not in stored and "[redacted]" in stored


async def test_request_returns_response(server: str) -> None:
    provider = make(server)
    response = await provider.request(
        HttpRequest("PUT", "echo", headers={"X-Trace": "t1"}, body=b"raw body")
    )
    data = response.json()
    assert response.status == 200
    assert data["method"] == "PUT"
    assert data["path"] == "/api/echo"
    assert data["headers"]["x-trace"] == "t1"
    assert data["body"] == "raw body"


@pytest.mark.parametrize(
    ("auth", "check"),
    [
        ({"mode": "none"}, lambda d: "authorization" not in d["headers"]),
        (
            {"mode": "api_key", "api_key": API_KEY},
            lambda d: d["headers"]["x-api-key"] == API_KEY,
        ),
        (
            {"mode": "api_key", "api_key": API_KEY, "api_key_header": "Api-Token"},
            lambda d: d["headers"]["api-token"] == API_KEY,
        ),
        (
            {"mode": "api_key", "api_key": API_KEY, "api_key_in": "query"},
            lambda d: d["query"]["api_key"] == API_KEY,
        ),
        (
            {"mode": "api_key", "api_key": API_KEY, "api_key_in": "query", "api_key_param": "k"},
            lambda d: d["query"]["k"] == API_KEY,
        ),
        (
            {"mode": "basic", "username": "ada", "password": PASSWORD},
            lambda d: (
                d["headers"]["authorization"]
                == "Basic " + base64.b64encode(f"ada:{PASSWORD}".encode()).decode()
            ),
        ),
        (
            {"mode": "bearer", "token": API_KEY},
            lambda d: d["headers"]["authorization"] == f"Bearer {API_KEY}",
        ),
        (
            {"mode": "oauth2_authorization_code", "token": API_KEY, "refresh_token": "r"},
            lambda d: d["headers"]["authorization"] == f"Bearer {API_KEY}",
        ),
    ],
)
async def test_auth_modes_seen_by_server(server: str, auth: dict[str, str], check: Any) -> None:
    response = await make(server, **auth).request(HttpRequest("GET", "/echo"))
    assert check(response.json())


async def test_client_credentials_token_reused_across_deliveries(server: str) -> None:
    provider = make(
        server,
        mode="oauth2_client_credentials",
        client_id="cid",
        client_secret=CLIENT_SECRET,
        token_url=f"{server}/token",
        scopes="read,write",
        token_auth_method="client_secret_post",
    )
    for _ in range(3):
        outcome = await provider.deliver(envelope({"path": "/cc"}))
        assert isinstance(outcome, Delivered) and outcome.result["status"] == 200
    assert STATE["token_requests"] == 1


async def test_client_credentials_may_use_http_basic(server: str) -> None:
    """Before, the secret went only in the form body, so a token server that accepts
    only HTTP Basic (which RFC 6749 obliges servers to support) refused every request."""
    provider = make(
        server,
        mode="oauth2_client_credentials",
        client_id="c:id",
        client_secret=CLIENT_SECRET + "+&",
        token_url=f"{server}/token/basic",
        token_auth_method="client_secret_basic",
    )
    outcome = await provider.deliver(envelope({"path": "/cc"}))
    assert isinstance(outcome, Delivered) and outcome.result["status"] == 200
    assert STATE["token_requests"] == 1


async def test_a_token_endpoint_answering_a_page_is_an_outage_not_refused_credentials(
    server: str,
) -> None:
    """Both OAuth paths. Before: a 200 whose body was not JSON (a proxy or captive portal
    page) was 'token endpoint refused the client credentials (HTTP 200): not json',
    auth_failed, with advice to check the secret and reconnect."""
    refresh = "rt-3e4d5c-refresh-secret"
    with pytest.raises(TransientError) as info:
        await call_token_endpoint(
            f"{server}/token/portal",
            {"grant_type": "refresh_token", "refresh_token": refresh},
            client_id="cid",
            client_secret=CLIENT_SECRET,
        )
    assert "HTTP 200" in info.value.message and "not a JSON object" in info.value.message
    assert "not quoted" in info.value.message and refresh not in info.value.message
    _no_secrets(info.value.message)

    provider = make(
        server,
        mode="oauth2_client_credentials",
        client_id="cid",
        client_secret=CLIENT_SECRET,
        token_url=f"{server}/token/portal",
        token_auth_method="client_secret_post",
    )
    outcome = await provider.deliver(envelope({"path": "/cc"}))
    assert isinstance(outcome, Retry) and outcome.retry_class is RetryClass.TRANSIENT
    assert "HTTP 200" in outcome.message and "refused" not in outcome.message
    result = await provider.test_connection()
    assert not result.success and result.details and result.details["code"] == "transient"
    _no_secrets(outcome.message + result.message)


async def test_a_token_answer_that_is_not_json_is_not_quoted(server: str) -> None:
    """A token endpoint's success is the one answer whose body holds credentials: cut
    short (or sent form-encoded), the tokens it issued were quoted in the error, which
    reaches the outbox's last_error, Test's answer and the log."""
    with pytest.raises(TransientError) as info:
        await call_token_endpoint(
            f"{server}/token/cut",
            {"grant_type": "refresh_token", "refresh_token": "rt-old-refresh"},
            client_id="cid",
            client_secret=CLIENT_SECRET,
        )
    provider = make(
        server,
        mode="oauth2_client_credentials",
        client_id="cid",
        client_secret=CLIENT_SECRET,
        token_url=f"{server}/token/cut",
    )
    outcome = await provider.deliver(envelope({"path": "/cc"}))
    assert isinstance(outcome, Retry), outcome
    result = await provider.test_connection()
    for message in (info.value.message, outcome.message, result.message):
        assert "HTTP 200" in message and "not a JSON object" in message, message
        assert not any(token in message for token in NEW_TOKENS), message


async def test_client_secret_post_stays_the_default_and_others_are_refused(server: str) -> None:
    """A connector stored before the choice existed keeps sending the form body."""
    auth = {
        "mode": "oauth2_client_credentials",
        "client_id": "c:id",
        "client_secret": CLIENT_SECRET + "+&",
        "token_url": f"{server}/token/basic",
    }
    provider = make(server, **auth)
    assert provider.config["auth"]["token_auth_method"] == "client_secret_post"
    outcome = await provider.deliver(envelope({"path": "/cc"}))
    assert isinstance(outcome, AuthFailed) and "invalid_client" in outcome.message
    _no_secrets(outcome.message)
    with pytest.raises(ConnectorConfigError) as info:
        make(server, **{**auth, "token_auth_method": "private_key_jwt"})
    assert "auth.token_auth_method" in info.value.field_errors


async def test_open_client_is_reused_and_closed(server: str) -> None:
    provider = make(server)
    await provider.open()
    try:
        for _ in range(2):
            outcome = await provider.deliver(envelope({"path": "/echo"}))
            assert isinstance(outcome, Delivered) and outcome.result["status"] == 200
    finally:
        await provider.close()
    await provider.close()  # idempotent


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (404, Permanent),
        (400, Permanent),
        (401, AuthFailed),
        (403, AuthFailed),
        (500, Retry),
        (408, Retry),  # Request Timeout may be repeated (RFC 9110): it went to dead before
    ],
)
async def test_deliver_outcomes(server: str, code: int, expected: type) -> None:
    provider = make(server, mode="api_key", api_key=API_KEY)
    outcome = await provider.deliver(envelope({"method": "POST", "path": f"/status/{code}"}))
    assert isinstance(outcome, expected)
    assert not isinstance(outcome, Delivered)
    assert str(code) in outcome.message
    _no_secrets(outcome.message)


async def test_an_error_quoting_the_url_does_not_carry_the_encoded_key(server: str) -> None:
    key = "k3y/with+special&chars="  # percent-encoded in the query string
    provider = make(server, mode="api_key", api_key=key, api_key_in="query")
    outcome = await provider.deliver(envelope({"path": "/quote-url"}))
    assert isinstance(outcome, Permanent) and "invalid request" in outcome.message
    assert "k3y" not in outcome.message


async def test_deliver_rate_limited_carries_retry_after(server: str) -> None:
    outcome = await make(server).deliver(envelope({"path": "/status/429"}))
    assert isinstance(outcome, Retry)
    assert outcome.retry_class is RetryClass.RATE_LIMITED
    assert outcome.retry_after == 42.0


async def test_deliver_unavailable_carries_retry_after(server: str) -> None:
    """The outbox schedules the next attempt no earlier than a 503's Retry-After."""
    outcome = await make(server).deliver(envelope({"path": "/status/503"}))
    assert isinstance(outcome, Retry)
    assert outcome.retry_class is RetryClass.TRANSIENT
    assert outcome.retry_after == 42.0


async def test_a_dripping_server_is_cut_off_at_timeout_seconds(server: str) -> None:
    """Before: timeout_seconds bounded each read only; a server sending a byte every
    0.1 s held the delivery for the whole response (in the audit: 1 byte/s for 120 s
    against timeout_seconds=3 outlived the outbox lease, and was sent again)."""
    provider = HttpRestProvider.from_config({"base_url": f"{server}/api", "timeout_seconds": 1})
    started = time.monotonic()
    outcome = await provider.deliver(envelope({"method": "POST", "path": "drip"}))
    assert time.monotonic() - started < 2.5
    assert isinstance(outcome, Retry) and outcome.retry_class == RetryClass.TRANSIENT
    assert "no complete answer within 1 s" in outcome.message


async def test_a_dripping_token_endpoint_is_cut_off_at_the_token_timeout(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """oauth2_http's code exchange and refresh: before, 15 s bounded each read only."""
    monkeypatch.setattr("jackfield.connectors.oauth2_http.TOKEN_TIMEOUT", 0.5)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"no complete answer within 0\.5 s"):
        await call_token_endpoint(
            f"{server}/api/drip",
            {"grant_type": "refresh_token", "refresh_token": "rt-1234"},
            client_id="cid",
            client_secret=CLIENT_SECRET,
        )
    assert time.monotonic() - started < 2.0


async def test_a_huge_response_is_read_up_to_the_cap_and_flagged_truncated(server: str) -> None:
    """Before: the whole body was read into memory (100 MB: +225 MB RSS) to keep 64 KiB
    of it, and nothing said the result's body was cut."""
    provider = make(server)
    outcome = await provider.deliver(envelope({"method": "POST", "path": "huge?mb=64"}))
    assert isinstance(outcome, Delivered)
    assert outcome.result["status"] == 200
    assert outcome.result["truncated"] is True
    assert len(outcome.result["body"]) == RESULT_BODY_LIMIT
    tracemalloc.start()
    try:
        response = await provider.request(HttpRequest("GET", "huge", params={"mb": "64"}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.truncated and len(response.body) == MAX_RESPONSE_BYTES
    assert peak < 16 * 1024 * 1024  # reading stopped at the cap (before: > 64 MB)


async def test_a_short_response_is_not_flagged_truncated(server: str) -> None:
    outcome = await make(server).deliver(envelope({"path": "echo"}))
    assert isinstance(outcome, Delivered) and outcome.result["truncated"] is False


async def test_deliver_unreachable_is_retry() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = HttpRestProvider.from_config({"base_url": f"http://127.0.0.1:{port}"})
    outcome = await provider.deliver(envelope({"path": "/x"}))
    assert isinstance(outcome, Retry)
    assert outcome.error_class == "ConnectionFailedError"


async def test_deliver_egress_denied_is_permanent(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JACKFIELD_EGRESS_ALLOWLIST")
    outcome = await make(server).deliver(envelope({"path": "/echo"}))
    assert isinstance(outcome, Permanent)
    assert outcome.error_class == "EgressDeniedError"
    assert STATE["hits"] == 0


@pytest.mark.parametrize("path", ["http://evil.example/x", "//evil.example/x", "https://a.b"])
async def test_absolute_path_refused(server: str, path: str) -> None:
    provider = make(server, mode="bearer", token=API_KEY)
    outcome = await provider.deliver(envelope({"path": path}))
    assert isinstance(outcome, Permanent)
    assert "relative" in outcome.message


async def test_unknown_operation_is_permanent(server: str) -> None:
    outcome = await make(server).deliver(envelope({}, operation="explode"))
    assert isinstance(outcome, Permanent)


# -- test_connection ---------------------------------------------------------------------
async def test_connection_success(server: str) -> None:
    result = await make(server).test_connection()
    assert result.success is False  # GET /api itself is a 404 on this server
    provider = HttpRestProvider.from_config({"base_url": f"{server}/api", "health_path": "/health"})
    result = await provider.test_connection()
    assert result == ConnectionTestResult(True, "127.0.0.1 answered HTTP 200", {"status": 200})


async def test_connection_egress_denied(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JACKFIELD_EGRESS_ALLOWLIST")
    result = await make(server).test_connection()
    assert not result.success
    assert "loopback" in result.message
    assert result.details is not None
    assert result.details["code"] == "egress_denied"
    assert "JACKFIELD_EGRESS_ALLOWLIST" in result.details["remediation"]


@pytest.mark.parametrize(
    "auth",
    [
        {"mode": "basic", "username": "ada", "password": PASSWORD},
        {"mode": "api_key", "api_key": API_KEY},
        {"mode": "api_key", "api_key": API_KEY, "api_key_in": "query"},
        {"mode": "bearer", "token": API_KEY},
    ],
)
async def test_connection_auth_failure(server: str, auth: dict[str, str]) -> None:
    provider = HttpRestProvider.from_config(
        {"base_url": f"{server}/api", "health_path": "/status/401", "auth": auth}
    )
    result = await provider.test_connection()
    assert not result.success
    assert result.details is not None and result.details["code"] == "auth_failed"
    _no_secrets(result.message + repr(result.details))


async def test_connection_token_endpoint_refuses(server: str) -> None:
    provider = make(
        server,
        mode="oauth2_client_credentials",
        client_id="cid",
        client_secret=CLIENT_SECRET + "-wrong",
        token_url=f"{server}/token",
    )
    result = await provider.test_connection()
    assert not result.success
    assert result.details is not None and result.details["code"] == "auth_failed"
    assert "invalid_client" in result.message
    _no_secrets(result.message + repr(result.details))


def _token_redirect(server: str, code: int) -> str:
    """A token URL answering ``code`` to ``/token`` on another origin (same server)."""
    elsewhere = server.replace("127.0.0.1", "localhost") + "/token"
    return f"{server}/redirect?to={quote(elsewhere, safe='')}&code={code}"


@pytest.mark.parametrize("code", [307, 308])
async def test_connection_token_endpoint_redirect_is_refused_not_followed(
    server: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1,localhost")
    provider = make(
        server,
        mode="oauth2_client_credentials",
        client_id="cid",
        client_secret=CLIENT_SECRET,
        token_url=_token_redirect(server, code),
    )
    result = await provider.test_connection()
    assert not result.success
    assert STATE["token_hits"] == 0  # before: the secret was POSTed to the other origin
    assert f"HTTP {code}" in result.message and "redirect" in result.message
    _no_secrets(result.message + repr(result.details))


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_a_refresh_is_not_posted_on_to_where_the_token_endpoint_redirects(
    server: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """oauth2_http's refresh and code exchange: refresh token and secret stay put."""
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1,localhost")
    refresh = "rt-5f6e7d-refresh-secret"
    with pytest.raises(AuthError) as info:
        await call_token_endpoint(
            _token_redirect(server, 307),
            {"grant_type": "refresh_token", "refresh_token": refresh},
            client_id="cid",
            client_secret=CLIENT_SECRET,
            auth_method=method,
        )
    assert STATE["token_hits"] == 0
    assert "HTTP 307" in info.value.message
    for text in (info.value.message, info.value.remediation or ""):
        _no_secrets(text)
        assert refresh not in text


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_a_secret_a_token_endpoint_quotes_across_the_cut_shows_no_part_of_it(
    server: str, method: str
) -> None:
    """Before: the error code and description were cut to 300 characters, then masked, so
    a client secret or refresh token quoted across the cut showed its first characters."""
    refresh = "rt-8c7b6a-refresh-secret"
    quoted = CLIENT_SECRET if method == "client_secret_post" else refresh
    for pad in range(260, 300, 4):  # the cut falls inside the quoted secret for some
        with pytest.raises(AuthError) as info:
            await call_token_endpoint(
                f"{server}/token/padded/{pad}",
                {"grant_type": "refresh_token", "refresh_token": refresh},
                client_id="cid",
                client_secret=CLIENT_SECRET,
                auth_method=method,
            )
        assert "invalid_grant" in info.value.message
        assert quoted[:5] not in info.value.message, pad


async def test_connection_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = HttpRestProvider.from_config({"base_url": f"http://127.0.0.1:{port}/"})
    result = await provider.test_connection()
    assert not result.success
    assert result.details is not None and result.details["code"] == "connection_failed"


async def test_an_embedded_apps_allowlist_setting_is_the_guards(
    server: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Before, only the environment variable counted: ``Settings(egress_allowlist=...)``
    of an embedded application was ignored and its loopback service refused."""
    from jackfield import Jackfield
    from jackfield.integration.egress import use_allowlist
    from jackfield.settings import Settings

    monkeypatch.delenv("JACKFIELD_EGRESS_ALLOWLIST")
    health = {"base_url": f"{server}/api", "health_path": "/health"}
    settings = Settings(database_url=f"sqlite:///{tmp_path}/jf.db", data_dir=tmp_path)
    try:
        Jackfield(settings=settings.model_copy(update={"egress_allowlist": "127.0.0.1"}))
        allowed = await HttpRestProvider.from_config(health).test_connection()
        Jackfield(settings=settings)  # the environment's (none) again
        refused = await HttpRestProvider.from_config(health).test_connection()
    finally:
        use_allowlist(None)
    assert allowed.success, allowed.message
    assert not refused.success and "loopback" in refused.message


async def test_a_non_ascii_body_cut_for_the_result_is_flagged_truncated() -> None:
    """Before: the result's body was cut at 65 KiB of *bytes* but judged complete by its
    length in *characters*: a 100 KB body of 3-byte characters came back as 22 186 of
    its 33 333 characters with truncated: false."""
    from jackfield.kernel.categories.http import HttpResponse

    class Fixed(HttpRestProvider):
        async def request(self, request: HttpRequest) -> HttpResponse:
            return HttpResponse(status=200, headers={}, body=("€" * 33_333).encode())

    provider = Fixed.from_config({"base_url": "https://api.example.com"})
    outcome = await provider.deliver(envelope({"path": "x"}))
    assert isinstance(outcome, Delivered)
    assert len(outcome.result["body"]) < 33_333
    assert outcome.result["truncated"] is True


# across the old cut (a little over the limit) and across the limit itself (64 KiB)
@pytest.mark.parametrize("before", [*range(22_180, 22_190, 2), *range(21_838, 21_848, 2)])
async def test_a_credential_quoted_across_the_results_cut_shows_no_part_of_it(
    before: int,
) -> None:
    """Before: the body was cut at a byte count a little over the limit, then masked; in
    a body of 3-byte characters a credential across that cut left its first part."""
    from jackfield.kernel.categories.http import HttpResponse

    body = ("€" * before + API_KEY + "€" * 30_000).encode()

    class Quoting(HttpRestProvider):
        async def request(self, request: HttpRequest) -> HttpResponse:
            return HttpResponse(200, {}, body, credentials=frozenset({API_KEY}))

    provider = Quoting.from_config({"base_url": "https://api.example.com"})
    outcome = await provider.deliver(envelope({"path": "x"}))
    assert isinstance(outcome, Delivered)
    assert outcome.result["truncated"] is True
    assert len(outcome.result["body"].encode()) <= 64 * 1024
    assert API_KEY[:4] not in outcome.result["body"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"path": "/echo", "headers": {"X-A": 5}}, "headers"),
        ({"path": "/echo", "headers": {"X-A": None}}, "headers"),
        ({"path": "/echo", "headers": "abc"}, "headers"),
        ({"path": "/echo", "headers": {"X-A": "a\r\nInjected: 1"}}, "headers"),
        ({"path": "/echo", "headers": {"Bad Name": "v"}}, "headers"),
        ({"path": "/echo", "headers": {"X-U": "üñí"}}, "headers"),
        ({"path": "/echo", "params": "x"}, "params"),
        ({"path": "/echo", "params": {"a": {"b": 1}}}, "params"),
        ({"path": "/ec ho\r\nX: y"}, "path"),
        ({"path": 5}, "path"),
        ({"method": "GE T", "path": "/echo"}, "method"),
        ({"method": 5, "path": "/echo"}, "method"),
    ],
)
async def test_a_payload_no_request_can_carry_is_permanent_and_sends_nothing(
    server: str, payload: dict[str, Any], field: str
) -> None:
    """Before, these raised TypeError, ValueError or InvalidURL out of the provider (a
    crash of the unit, retried after each restart's backoff while the messages behind
    it waited), or a TransientError that was retried (a line break in a header value,
    an illegal method). Now each is dead at once, naming the field to correct."""
    outcome = await make(server).deliver(envelope(payload))
    assert isinstance(outcome, Permanent), outcome
    assert outcome.error_class == "PermanentError"
    assert f"payload field {field!r}" in outcome.message
    assert STATE["hits"] == 0


async def test_a_request_httpx_cannot_send_is_permanent_not_retried(server: str) -> None:
    """Through the Python API (no payload checks): what the HTTP library refuses to
    send fails the same way every time, so it is no TransientError; the refused header's
    value is not quoted (a header may carry a credential)."""
    provider = make(server)
    for request in (
        HttpRequest("GET", "/echo", headers={"X-A": "a\r\nB: 1"}),
        HttpRequest("GE T", "/echo"),
    ):
        with pytest.raises(PermanentError, match="cannot be sent as given") as info:
            await provider.request(request)
        assert "B: 1" not in str(info.value)
    with pytest.raises(PermanentError, match="invalid URL"):
        await provider.request(HttpRequest("GET", "/ec\nho"))
    assert STATE["hits"] == 0


async def test_json_values_a_query_string_can_carry_are_sent(server: str) -> None:
    payload = {"path": "/echo", "params": {"n": 2, "on": True, "tags": ["a", "b"]}}
    outcome = await make(server).deliver(envelope(payload))
    assert isinstance(outcome, Delivered), outcome
    assert json.loads(outcome.result["body"])["query"] == {"n": "2", "on": "true", "tags": "b"}


async def test_every_attempt_of_a_delivery_carries_the_envelope_id_as_idempotency_key(
    server: str,
) -> None:
    """Before, nothing in a request told the receiver that a retry was one: the outbox
    delivers at least once, and the envelope id is how a receiver deduplicates."""
    provider = make(server)
    retried = envelope({"method": "POST", "path": "/echo", "json": {"order": 42}})
    seen = []
    for _ in range(2):
        outcome = await provider.deliver(retried)
        assert isinstance(outcome, Delivered), outcome
        seen.append(json.loads(outcome.result["body"])["headers"]["idempotency-key"])
    assert seen == [retried.envelope_id] * 2


@pytest.mark.parametrize("method", ["GET", "put", "DELETE"])
async def test_a_method_safe_to_repeat_goes_without_an_idempotency_key(
    server: str, method: str
) -> None:
    """A receiver that caches answers per key (errors included) would otherwise replay a
    transient failure to every retry of a request HTTP already allows to repeat."""
    outcome = await make(server).deliver(envelope({"method": method, "path": "/echo"}))
    assert isinstance(outcome, Delivered), outcome
    assert "idempotency-key" not in json.loads(outcome.result["body"])["headers"]


async def test_an_idempotency_key_the_payload_sets_is_sent_instead(server: str) -> None:
    payload = {"method": "PATCH", "path": "/echo", "headers": {"idempotency-key": "order-42"}}
    outcome = await make(server).deliver(envelope(payload))
    assert isinstance(outcome, Delivered), outcome
    headers = json.loads(outcome.result["body"])["headers"]
    assert headers["idempotency-key"] == "order-42"
    assert envelope(payload).envelope_id not in json.dumps(headers)
