"""Connect an ``oauth2_http`` connector from the admin UI, in headless Chromium.

A small OAuth2 authorization server runs on loopback: ``/authorize`` approves at once
and sends the browser back to the ``redirect_uri`` with ``code`` and ``state``;
``/token`` hands out tokens only for the right code, redirect URI, client credentials
and PKCE (S256) verifier; ``/api`` is the protected API the connection test calls.
Jackfield's ``PUBLIC_URL`` is the live server's own URL, so the redirect URI it sends
is the real callback of this server.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from jackfield import connector_registry
from jackfield.api import create_app
from jackfield.app import Jackfield
from jackfield.service import Principal, Role
from jackfield.settings import Settings

pytestmark = pytest.mark.browser
CLIENT_ID = "jackfield-ui-test"
CLIENT_SECRET = "client-secret-" + "5d2a" * 4
ACCESS_TOKEN = "access-" + secrets.token_hex(12)
REFRESH_TOKEN = "refresh-" + secrets.token_hex(12)


def field(page: Any, label: str) -> Any:
    """The input labelled ``label`` (labels of required fields end in "* (required)")."""
    return page.get_by_label(re.compile("^" + re.escape(label) + r"( \*| \(|$)"))


class AuthServer:
    """The authorization server's memory: issued codes and what was asked."""

    def __init__(self) -> None:
        self.codes: dict[str, dict[str, str]] = {}
        self.token_calls: list[dict[str, str]] = []
        self.authorize_calls: list[dict[str, str]] = []

    async def authorize(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.authorize_calls.append(query)
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, 400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": query["code_challenge"],
            "redirect_uri": query["redirect_uri"],
        }
        back = {"code": code, "state": query["state"]}
        return RedirectResponse(f"{query['redirect_uri']}?{urlencode(back)}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_calls.append(form)
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, 401)
        issued = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if (
            form.get("grant_type") != "authorization_code"
            or issued is None
            or issued["redirect_uri"] != form.get("redirect_uri")
            or issued["challenge"] != challenge
        ):
            return JSONResponse({"error": "invalid_grant"}, 400)
        return JSONResponse(
            {
                "access_token": ACCESS_TOKEN,
                "refresh_token": REFRESH_TOKEN,
                "token_type": "Bearer",
                "expires_in": 3600,
            }
        )

    async def api(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            return JSONResponse({"error": "unauthorized"}, 401)
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/api", self.api),
            ]
        )


class Served:
    """An ASGI app on a loopback port, in a background thread."""

    def __init__(self, app: Any, port: int = 0) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def oauth_setup(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Jackfield, str, str, AuthServer]]:
    """Jackfield served with PUBLIC_URL = its own address, and the authorization server."""
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1")
    # a no-op once the entry point is installed; registers the built-in otherwise
    connector_registry.register_path("jackfield.connectors.oauth2_http:OAuth2HttpProvider")
    port = _free_port()
    public_url = f"http://127.0.0.1:{port}"
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        secret_key=key,
        public_url=public_url,
    )
    jf = Jackfield(settings=settings)
    auth = AuthServer()
    try:
        with Served(auth.app()) as auth_url, Served(create_app(jf), port) as url:
            assert url == public_url
            yield jf, url, auth_url, auth
    finally:
        jf.close()


def test_connect_through_the_oauth2_authorization_code_flow(
    browser: Any, oauth_setup: tuple[Jackfield, str, str, AuthServer]
) -> None:
    jf, url, auth_url, auth = oauth_setup
    user, _ = jf.accounts.create_user(
        f"oauth-{uuid.uuid4().hex[:6]}@example.com", "oauth-org", "admin", password="oauth pass 1"
    )
    context = browser.new_context(base_url=url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto("/login")
        page.get_by_label("Email").fill(user["email"])
        page.get_by_label("Password").fill("oauth pass 1")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/connectors")

        page.goto("/connectors/new?category=http&provider_type=oauth2_http")
        field(page, "Name").fill("Partner API")
        field(page, "Base URL").fill(f"{auth_url}/api")
        field(page, "Authorization URL").fill(f"{auth_url}/authorize")
        field(page, "Token URL").fill(f"{auth_url}/token")
        field(page, "Client ID").fill(CLIENT_ID)
        field(page, "Client secret").fill(CLIENT_SECRET)
        field(page, "Scopes").fill("read write")
        page.get_by_role("button", name="Create connector").click()
        page.get_by_role("heading", name="Partner API").wait_for()
        connector_url = page.url
        assert page.locator("#status-badge").inner_text() == "draft"

        page.get_by_role("button", name="Connect with OAuth").click()
        # authorize (auto-approved) -> Jackfield's callback -> back on the connector page
        page.wait_for_url(f"{connector_url}?oauth=done")
        assert page.locator("#status-badge").inner_text() == "connected"
        assert page.get_by_text("Connected: ").is_visible()  # the page says how it went
        assert page.get_by_role("button", name="Reconnect with OAuth").is_visible()
        html = page.content()
        for secret in (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET):
            assert secret not in html
        assert field(page, "Access token").input_value() == "********"
    finally:
        context.close()

    [asked] = auth.authorize_calls
    assert asked["redirect_uri"] == f"{url}/api/connectors/oauth/callback/oauth2_http"
    assert asked["scope"] == "read write"
    assert [call["grant_type"] for call in auth.token_calls] == ["authorization_code"]
    who = Principal(user["organization_id"], "test", Role.ADMIN)
    [stored] = jf.connectors.list(who)
    assert stored["status"] == "connected"
    config = jf.connectors.resolve(stored["id"])[2]
    assert config["oauth"]["access_token"] == ACCESS_TOKEN
