"""The HTTP toolkit against a real ASGI app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import unquote_plus

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

import jackfield.integration as integration
from jackfield.integration import (
    EgressPolicy,
    HeaderAuth,
    OAuth2ClientCredentials,
    OAuth2RefreshingAuth,
    QueryParamAuth,
    build_auth,
    create_client,
    parse_retry_after,
    raise_for_response,
    request,
)
from jackfield.kernel.errors import (
    AuthError,
    ConnectionFailedError,
    ConnectorConfigError,
    ConnectorError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from jackfield.testing import LiveServer

API_KEY = "key-4f1d9c2e-very-secret"
PASSWORD = "pw-s3cr3t-0d5e"
CLIENT_SECRET = "cs-7a8b9c-top-secret"
STATE: dict[str, Any] = {}


def _reset() -> None:
    STATE.clear()
    STATE.update(token_requests=0, tokens=set(), token_forms=[], flaky=0, hits=0)


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
    """Answers the status asked for, echoing every request header back in the body."""
    code = int(request.path_params["code"])
    headers = {}
    if "retry_after" in request.query_params:
        headers["Retry-After"] = request.query_params["retry_after"]
    body = {"error": "nope", "seen": dict(request.headers), "query": dict(request.query_params)}
    return JSONResponse(body, status_code=code, headers=headers)


async def token(request: Request) -> Response:
    STATE["token_requests"] += 1
    form = dict(await request.form())
    STATE["token_forms"].append(form)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme == "Basic":  # RFC 6749 §2.3.1: every server takes Basic; the body is optional
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        client_id, secret = unquote_plus(user), unquote_plus(password)
    if secret != CLIENT_SECRET or client_id != "cid":
        echoed = f"bad client {client_id} / {secret}"
        return JSONResponse({"error": "invalid_client", "error_description": echoed}, 401)
    issued = f"tok-{STATE['token_requests']}"
    STATE["tokens"].add(issued)
    return JSONResponse({"access_token": issued, "token_type": "bearer", "expires_in": 3600})


async def padded_token(request: Request) -> Response:
    """A token endpoint refusing the client, quoting the posted client_secret (or refresh
    token) after ``pad`` characters, with the status asked for."""
    form = dict(await request.form())
    quoted = form.get("client_secret") or form.get("refresh_token") or ""
    said = "x" * int(request.path_params["pad"]) + quoted
    body = {"error": "invalid_client", "error_description": said}
    return JSONResponse(body, int(request.path_params["code"]))


async def protected(request: Request) -> Response:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or value not in STATE["tokens"]:
        return JSONResponse({"error": "invalid_token"}, 401)
    return JSONResponse({"token": value})


async def slow(request: Request) -> Response:
    await asyncio.sleep(1.0)
    return JSONResponse({"ok": True})


async def flaky(request: Request) -> Response:
    STATE["flaky"] += 1
    if STATE["flaky"] <= 2:
        return JSONResponse({"error": "busy"}, 503, headers={"Retry-After": "0"})
    return JSONResponse({"ok": True, "attempts": STATE["flaky"]})


async def drip(request: Request) -> Response:
    """30 bytes, one every 0.1 s: each read is quick, the whole response is slow."""

    async def body() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b"x"
            await asyncio.sleep(0.1)

    return StreamingResponse(body())


async def big(request: Request) -> Response:
    """``?kb=N`` kilobytes, streamed (``?status=`` to answer an error with them)."""
    kb = int(request.query_params["kb"])
    code = int(request.query_params.get("status", "200"))

    async def body() -> AsyncIterator[bytes]:
        for _ in range(kb):
            yield b"b" * 1024

    return StreamingResponse(body(), status_code=code)


async def redirect(request: Request) -> Response:
    code = int(request.query_params.get("code", "302"))
    return RedirectResponse(request.query_params["to"], status_code=code)


async def loop(request: Request) -> Response:
    return RedirectResponse("/loop", status_code=302)


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/status/{code:int}", status, methods=["GET", "POST"]),
        Route("/token", token, methods=["POST"]),
        Route("/padded-token/{code:int}/{pad:int}", padded_token, methods=["POST"]),
        Route("/protected", protected),
        Route("/slow", slow),
        Route("/drip", drip),
        Route("/big", big),
        Route("/flaky", flaky, methods=["GET", "POST"]),
        Route("/redirect", redirect, methods=["GET", "POST"]),
        Route("/loop", loop),
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
    _reset()


def _assert_no_secrets(exc: BaseException, *secrets: str) -> None:
    rendered = [str(exc), repr(exc)]
    if isinstance(exc, ConnectorError):
        rendered += [exc.message, exc.remediation, repr(exc.to_dict())]
    for secret in secrets:
        for text in rendered:
            assert secret not in text


# -- public surface --------------------------------------------------------------------
def test_all_names_resolve_and_are_sorted() -> None:
    assert all(hasattr(integration, name) for name in integration.__all__)
    assert len(set(integration.__all__)) == len(integration.__all__)
    public = {n for n in vars(integration) if not n.startswith("_")}
    modules = {"auth", "client", "egress", "errors"}
    assert public - modules == set(integration.__all__)


# -- client basics and auth modes ----------------------------------------------------
async def test_no_auth_sends_user_agent_and_no_credentials(server: str) -> None:
    async with create_client(server) as client:
        response = await request(client, "GET", "/echo")
    seen = response.json()["headers"]
    assert seen["user-agent"].startswith("jackfield/")
    assert "authorization" not in seen


async def test_api_key_in_custom_header(server: str) -> None:
    auth = build_auth({"mode": "api_key", "api_key": API_KEY, "api_key_header": "X-Token"})
    async with create_client(server, auth=auth) as client:
        response = await request(client, "GET", "/echo")
    assert response.json()["headers"]["x-token"] == API_KEY


async def test_api_key_default_header() -> None:
    assert isinstance(build_auth({"mode": "api_key", "api_key": API_KEY}), HeaderAuth)


async def test_api_key_in_query(server: str) -> None:
    auth = build_auth(
        {"mode": "api_key", "api_key": API_KEY, "api_key_in": "query", "api_key_param": "k"}
    )
    assert isinstance(auth, QueryParamAuth)
    async with create_client(server, auth=auth) as client:
        response = await request(client, "GET", "/echo", params={"q": "1"})
    assert response.json()["query"] == {"q": "1", "k": API_KEY}


async def test_basic_auth(server: str) -> None:
    auth = build_auth({"mode": "basic", "username": "ada", "password": PASSWORD})
    async with create_client(server, auth=auth) as client:
        response = await request(client, "GET", "/echo")
    scheme, _, value = response.json()["headers"]["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == f"ada:{PASSWORD}"


async def test_bearer_auth(server: str) -> None:
    auth = build_auth({"mode": "bearer", "token": API_KEY})
    async with create_client(server, auth=auth) as client:
        response = await request(client, "GET", "/echo")
    assert response.json()["headers"]["authorization"] == f"Bearer {API_KEY}"


async def test_custom_credential_header_dropped_on_cross_origin_redirect(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    auth = build_auth({"mode": "api_key", "api_key": API_KEY})
    policy = EgressPolicy(["127.0.0.1", "localhost"])
    async with create_client(server, auth=auth, policy=policy) as client:
        same = await request(client, "GET", "/redirect", params={"to": "/echo"})
        other = await request(
            client, "GET", "/redirect", params={"to": f"http://localhost:{port}/echo"}
        )
    assert same.json()["headers"]["x-api-key"] == API_KEY
    assert "x-api-key" not in other.json()["headers"]


async def test_query_key_follows_a_same_origin_redirect_only(server: str) -> None:
    """Before: a same-origin redirect (an API adding a trailing slash) lost a query-string
    key, while a header key was carried over; the API then answered 401."""
    port = server.rsplit(":", 1)[1]
    auth = build_auth(
        {"mode": "api_key", "api_key": API_KEY, "api_key_in": "query", "api_key_param": "k"}
    )
    policy = EgressPolicy(["127.0.0.1", "localhost"])
    other = f"http://localhost:{port}/echo"
    async with create_client(server, auth=auth, policy=policy) as client:
        same = await request(client, "GET", "/redirect", params={"to": "/echo?page=2"})
        away = await request(client, "GET", "/redirect", params={"to": other})
        quoted = await request(  # a Location quoting the key to another origin
            client, "GET", "/redirect", params={"to": f"{other}?k={API_KEY}&page=2"}
        )
    assert same.json()["query"] == {"page": "2", "k": API_KEY}
    assert away.json()["query"] == {}
    assert quoted.json()["query"] == {"page": "2"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_client_credentials_token_cached_then_refreshed_after_expiry(server: str) -> None:
    clock = Clock()
    auth = OAuth2ClientCredentials(
        f"{server}/token", "cid", CLIENT_SECRET, ("read", "write"), clock=clock
    )
    async with create_client(server, auth=auth) as client:
        for _ in range(3):
            response = await request(client, "GET", "/protected")
            assert response.json() == {"token": "tok-1"}
        assert STATE["token_requests"] == 1
        assert STATE["token_forms"][0]["grant_type"] == "client_credentials"
        assert STATE["token_forms"][0]["scope"] == "read write"

        clock.now += 3600 - 31  # still inside the refresh margin's safe side
        await request(client, "GET", "/protected")
        assert STATE["token_requests"] == 1

        clock.now += 2  # within 30 s of expiry: refresh ahead of time
        response = await request(client, "GET", "/protected")
    assert response.json() == {"token": "tok-2"}
    assert STATE["token_requests"] == 2


async def test_client_credentials_refetches_once_on_401(server: str) -> None:
    auth = build_auth(
        {
            "mode": "oauth2_client_credentials",
            "client_id": "cid",
            "client_secret": CLIENT_SECRET,
            "token_url": f"{server}/token",
        }
    )
    async with create_client(server, auth=auth) as client:
        await request(client, "GET", "/protected")
        STATE["tokens"].clear()  # the API revokes every token it issued
        response = await request(client, "GET", "/protected")
    assert response.json() == {"token": "tok-2"}


async def test_client_credentials_rejected_is_auth_error_without_secret(server: str) -> None:
    auth = OAuth2ClientCredentials(f"{server}/token", "cid-wrong", CLIENT_SECRET)
    async with create_client(server, auth=auth) as client:
        with pytest.raises(AuthError) as info:
            await request(client, "GET", "/protected")
    assert "invalid_client" in info.value.message
    _assert_no_secrets(info.value, CLIENT_SECRET)


@pytest.mark.parametrize(("code", "error"), [(400, AuthError), (500, TransientError)])
async def test_a_secret_quoted_across_the_excerpts_cut_shows_no_part_of_it(
    server: str, code: int, error: type[ConnectorError]
) -> None:
    """Before: the 200-character excerpt of the token endpoint's answer was cut first and
    masked after, so a secret quoted across the cut showed its first characters."""
    for pad in range(130, 200, 4):  # the cut falls inside the secret for some of these
        auth = OAuth2ClientCredentials(f"{server}/padded-token/{code}/{pad}", "cid", CLIENT_SECRET)
        async with create_client(server, auth=auth) as client:
            with pytest.raises(error) as info:
                await request(client, "POST", "/protected")
        assert "invalid_client" in info.value.message
        assert CLIENT_SECRET[:5] not in info.value.message, pad


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
@pytest.mark.parametrize("code", [307, 308])
async def test_a_redirecting_token_endpoint_gets_no_secret_forwarded(
    server: str, code: int, method: str
) -> None:
    """Before: the form (client_secret and all) was POSTed again to the other origin."""
    port = server.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}/token"  # another origin, on the same server
    token_url = str(httpx2.URL(f"{server}/redirect", params={"to": elsewhere, "code": code}))
    auth = OAuth2ClientCredentials(token_url, "cid", CLIENT_SECRET, auth_method=method)
    policy = EgressPolicy(["127.0.0.1", "localhost"])
    async with create_client(server, auth=auth, policy=policy) as client:
        with pytest.raises(AuthError) as info:
            await request(client, "GET", "/protected")
    assert STATE["token_forms"] == []  # nothing reached the other origin
    assert f"HTTP {code}" in info.value.message
    assert f"localhost:{port}/token" in info.value.message
    _assert_no_secrets(info.value, CLIENT_SECRET)


@pytest.mark.parametrize("code", [307, 308])
async def test_a_token_endpoint_redirecting_within_its_origin_is_followed(
    server: str, code: int
) -> None:
    """A token URL missing a trailing slash, redirected 307/308 by its own server (as
    Starlette's redirect_slashes does): before fe8316c the token was fetched, then it
    was an AuthError; the secret goes to the same origin, so the redirect is followed."""
    token_url = str(httpx2.URL(f"{server}/redirect", params={"to": "/token", "code": code}))
    auth = OAuth2ClientCredentials(token_url, "cid", CLIENT_SECRET)
    async with create_client(server, auth=auth) as client:
        response = await request(client, "GET", "/protected")
    assert response.json() == {"token": "tok-1"}
    assert len(STATE["token_forms"]) == 1


@pytest.mark.parametrize("code", [301, 302, 303])
async def test_a_token_endpoint_redirect_that_drops_the_body_is_refused(
    server: str, code: int
) -> None:
    """301/302/303 turn the POST into a GET without the grant: an error, even within
    the origin (the token endpoint would only answer something confusing)."""
    token_url = str(httpx2.URL(f"{server}/redirect", params={"to": "/token", "code": code}))
    auth = OAuth2ClientCredentials(token_url, "cid", CLIENT_SECRET)
    async with create_client(server, auth=auth) as client:
        with pytest.raises(AuthError, match=f"HTTP {code}"):
            await request(client, "GET", "/protected")


async def test_refreshing_auth_forces_one_refresh_on_401(server: str) -> None:
    STATE["tokens"].add("fresh")
    calls: list[bool] = []

    async def get_access_token(*, force_refresh: bool = False) -> str:
        calls.append(force_refresh)
        return "fresh" if force_refresh else "stale"

    auth = OAuth2RefreshingAuth(get_access_token)
    async with create_client(server, auth=auth) as client:
        response = await request(client, "GET", "/protected")
    assert response.json() == {"token": "fresh"}
    assert calls == [False, True]


async def test_refreshing_auth_retries_only_once(server: str) -> None:
    calls: list[bool] = []

    async def get_access_token(*, force_refresh: bool = False) -> str:
        calls.append(force_refresh)
        return "never-valid"

    async with create_client(server, auth=OAuth2RefreshingAuth(get_access_token)) as client:
        with pytest.raises(AuthError):
            await request(client, "GET", "/protected")
    assert calls == [False, True]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"mode": "api_key"}, "auth.api_key"),
        ({"mode": "basic"}, "auth.username"),
        ({"mode": "bearer"}, "auth.token"),
        ({"mode": "oauth2_client_credentials", "client_id": "x"}, "auth.token_url"),
        ({"mode": "oauth2_authorization_code"}, "auth.token"),
        ({"mode": "kerberos"}, "auth.mode"),
        ({"mode": "api_key", "api_key": "k", "api_key_in": "cookie"}, "auth.api_key_in"),
    ],
)
def test_build_auth_reports_missing_fields(config: dict[str, str], field: str) -> None:
    with pytest.raises(ConnectorConfigError) as info:
        build_auth(config)
    assert field in info.value.field_errors


def test_build_auth_none() -> None:
    assert build_auth({}) is None
    assert build_auth({"mode": "none"}) is None


# -- status translation ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, PermanentError),
        (400, PermanentError),
        (500, TransientError),
        (503, TransientError),
        (408, TransientError),  # RFC 9110 §15.5.9: may be repeated (it was dead before)
    ],
)
async def test_status_translation_never_leaks_credentials(
    server: str, code: int, error: type[ConnectorError]
) -> None:
    auth = build_auth({"mode": "api_key", "api_key": API_KEY})
    async with create_client(server, auth=auth) as client:
        with pytest.raises(error) as info:
            await request(client, "POST", f"/status/{code}", operation="create_item")
    exc = info.value
    assert type(exc) is error
    assert exc.operation == "create_item"
    assert "create_item" in exc.message
    assert str(code) in exc.message
    assert "nope" in exc.message  # the body excerpt is there, scrubbed
    _assert_no_secrets(exc, API_KEY)


@pytest.mark.parametrize(
    "config",
    [
        {"mode": "basic", "username": "ada", "password": PASSWORD},
        {"mode": "bearer", "token": PASSWORD},
        {"mode": "api_key", "api_key": PASSWORD, "api_key_in": "query"},
        {"mode": "api_key", "api_key": PASSWORD, "api_key_in": "query", "api_key_param": "k"},
        {"mode": "api_key", "api_key": PASSWORD, "api_key_header": "X-Client"},
    ],
)
async def test_echoed_credentials_are_redacted(server: str, config: dict[str, str]) -> None:
    async with create_client(server, auth=build_auth(config)) as client:
        with pytest.raises(AuthError) as info:
            await request(client, "GET", "/status/401")
    _assert_no_secrets(info.value, PASSWORD)
    assert "[redacted]" in info.value.message


@pytest.mark.parametrize(("code", "error"), [(429, RateLimitedError), (503, TransientError)])
async def test_retry_after_seconds(server: str, code: int, error: type[ConnectorError]) -> None:
    """Before, a 503's Retry-After (RFC 9110 §10.2.3) was dropped; only 429's counted."""
    async with create_client(server) as client:
        with pytest.raises(error) as info:
            await request(client, "GET", f"/status/{code}", params={"retry_after": "7"})
    assert getattr(info.value, "retry_after", None) == 7.0


@pytest.mark.parametrize(("code", "error"), [(429, RateLimitedError), (503, TransientError)])
async def test_retry_after_http_date(server: str, code: int, error: type[ConnectorError]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    async with create_client(server) as client:
        with pytest.raises(error) as info:
            await request(client, "GET", f"/status/{code}", params={"retry_after": when})
    retry_after = getattr(info.value, "retry_after", None)
    assert retry_after is not None
    assert 100 < retry_after <= 120


def test_parse_retry_after() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("12", now=now) == 12.0
    assert parse_retry_after("Tue, 01 Jan 2030 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Mon, 31 Dec 2029 00:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-3", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_raise_for_response_passes_success() -> None:
    response = httpx2.Response(204, request=httpx2.Request("GET", "https://example.com/x"))
    raise_for_response(response, "noop")


# -- transport failures ------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_connection_failed() -> None:
    async with create_client(f"http://127.0.0.1:{_closed_port()}") as client:
        with pytest.raises(ConnectionFailedError) as info:
            await request(client, "GET", "/echo", operation="ping")
    assert info.value.operation == "ping"
    assert "127.0.0.1" in info.value.message
    assert isinstance(info.value.__cause__, httpx2.ConnectError)


async def test_read_timeout_is_transient(server: str) -> None:
    async with create_client(server, timeout=0.2) as client:
        with pytest.raises(TransientError) as info:
            await request(client, "GET", "/slow")
    assert "timed out waiting for 127.0.0.1" in info.value.message


async def test_the_timeout_bounds_the_whole_request_not_each_read(server: str) -> None:
    """A byte every 0.1 s for 3 s never trips a 0.5 s read timeout: before, the request
    took the whole 3 s (in an outbox delivery: until the lease ran out)."""
    started = asyncio.get_running_loop().time()
    async with create_client(server, timeout=0.5) as client:
        with pytest.raises(TransientError) as info:
            await request(client, "GET", "/drip")
    assert asyncio.get_running_loop().time() - started < 1.5
    assert "no complete answer within 0.5 s" in info.value.message


async def test_a_timeout_given_for_one_request_sets_its_deadline(server: str) -> None:
    """Before: timeout=None (no timeout, in httpx2) still cut the request off at the
    client's timeout, and timeout=httpx2.USE_CLIENT_DEFAULT raised a TypeError."""
    async with create_client(server, timeout=0.5) as client:
        slow = await request(client, "GET", "/drip", timeout=None)
        default = await request(
            client, "GET", "/big", params={"kb": "1"}, timeout=httpx2.USE_CLIENT_DEFAULT
        )
        with pytest.raises(TransientError, match=r"within 0\.5 s"):
            await request(client, "GET", "/drip", timeout=httpx2.USE_CLIENT_DEFAULT)
    assert slow.content == b"x" * 30
    assert len(default.content) == 1024


@pytest.fixture
def resetting_server() -> Iterator[str]:
    """Raw TCP on loopback: starts a 200 response promising 1000 bytes, sends 4, then
    resets the connection (SO_LINGER 0), as a crashing upstream or a middlebox does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhalf")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


async def test_a_connection_reset_mid_response_says_what_happened(resetting_server: str) -> None:
    """Before: 'ReadError talking to 127.0.0.1: ' (the exception's text is empty)."""
    async with create_client(resetting_server) as client:
        with pytest.raises(TransientError) as info:
            await request(client, "GET", "/x", operation="fetch")
    message = info.value.message
    assert "closed by the server mid-response" in message
    assert "Connection reset by peer" in message
    assert not message.rstrip().endswith(":")


async def test_a_body_over_the_cap_is_a_clear_permanent_error(server: str) -> None:
    async with create_client(server) as client:
        ok = await request(client, "GET", "/big", params={"kb": "64"}, max_body=64 * 1024)
        with pytest.raises(PermanentError, match=r"larger than 65536 bytes") as over:
            await request(client, "GET", "/big", params={"kb": "65"}, max_body=64 * 1024)
        assert str(over.value).startswith("request: the response from 127.0.0.1")
        cut = await request(
            client, "GET", "/big", params={"kb": "65"}, max_body=64 * 1024, truncate=True
        )
        with pytest.raises(PermanentError, match="HTTP 400"):  # the status, not the size
            await request(client, "GET", "/big", params={"kb": "65", "status": "400"}, max_body=1)
    assert len(ok.content) == 64 * 1024 and not ok.extensions.get(integration.BODY_TRUNCATED)
    assert len(cut.content) == 64 * 1024 and cut.extensions[integration.BODY_TRUNCATED]


async def test_redirect_loop_is_permanent(server: str) -> None:
    async with create_client(server) as client:
        with pytest.raises(PermanentError, match="too many redirects"):
            await request(client, "GET", "/loop")


async def test_retries_idempotent_requests_honouring_retry_after(server: str) -> None:
    async with create_client(server) as client:
        response = await request(client, "GET", "/flaky", retries=2)
    assert response.json() == {"ok": True, "attempts": 3}


async def test_does_not_retry_post(server: str) -> None:
    async with create_client(server) as client:
        with pytest.raises(TransientError):
            await request(client, "POST", "/flaky", retries=2)
    assert STATE["flaky"] == 1


async def test_translate_transport_errors_keeps_kernel_errors() -> None:
    with pytest.raises(AuthError):
        with integration.translate_transport_errors("x"):
            raise AuthError("kept")
