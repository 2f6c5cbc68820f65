"""Fixtures of the OAuth tests: the local provider (``fake_oauth_provider``) and a
Jackfield API served on loopback, plus helpers that play the admin and the browser."""

from __future__ import annotations

import base64
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from jackfield import connector_registry
from jackfield.connectors.google_drive import GoogleDriveProvider
from jackfield.connectors.oauth2_http import OAuth2HttpProvider
from jackfield.testing import LiveServer

from .fake_oauth_provider import CLIENT_ID, CLIENT_SECRET, ProviderServer

for _cls in (OAuth2HttpProvider, GoogleDriveProvider):
    if not connector_registry.is_registered(_cls.category, _cls.provider_type):
        connector_registry.register(_cls)

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""For tests whose subject does not depend on the database (the suite stays fast)."""

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "ProviderServer"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Served = LiveServer  # an ASGI app served by uvicorn on 127.0.0.1 in a background thread


# -- helpers for the tests ------------------------------------------------------------------
def tokens_for(jf: Any, org: str | None = None) -> tuple[str, str]:
    """(admin token, user token) of a fresh organization."""
    org = org or f"org-{uuid.uuid4().hex[:8]}"
    _, admin = jf.accounts.create_user(
        f"a-{uuid.uuid4().hex[:6]}@x.io", org, "admin", with_token=True
    )
    _, user = jf.accounts.create_user(
        f"u-{uuid.uuid4().hex[:6]}@x.io", org, "user", with_token=True
    )
    return admin, user


def client(url: str, token: str | None = None) -> httpx2.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.Client(base_url=url, headers=headers, timeout=30)


def create_connector(api: httpx2.Client, ps: Any, **extra: Any) -> str:
    config = {
        "base_url": f"{ps.url}/api",
        "health_path": "me",
        "authorize_url": f"{ps.url}/authorize",
        "token_url": f"{ps.url}/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": "read write",
        **extra,
    }
    body = {"name": "Partner API", "category": "http", "provider_type": "oauth2_http"}
    response = api.post("/api/connectors", json={**body, "config": config})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def authorize(api: httpx2.Client, connector_id: str) -> str:
    """Start the flow and let the authorization server redirect; the callback URL."""
    response = api.get(f"/api/connectors/{connector_id}/oauth/authorize")
    assert response.status_code == 200, response.text
    redirect = httpx2.get(response.json()["authorize_url"], follow_redirects=False)
    assert redirect.status_code == 302, redirect.text
    return redirect.headers["location"]


def connect(api: httpx2.Client, connector_id: str) -> dict[str, Any]:
    """The whole flow for one connector; the callback's JSON answer."""
    response = httpx2.get(authorize(api, connector_id), timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1")


@pytest.fixture
def provider_server() -> Iterator[ProviderServer]:
    state = ProviderServer()
    with Served(state.app()) as served:
        state.url = served.url
        yield state


def _served(database_url: str, tmp_path: Path, *, runtime: bool, **extra: Any) -> Iterator[Any]:
    """A Jackfield whose public URL is its live API server (so redirect URIs resolve),
    with its runtime (and ``extra`` settings) or without."""
    from jackfield.api import create_app
    from jackfield.app import Jackfield
    from jackfield.settings import Settings

    port = free_port()
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        secret_key=key,
        public_url=f"http://127.0.0.1:{port}",
        directory_allowlist=str(tmp_path),
        **extra,
    )
    jf = Jackfield(settings=settings)
    with Served(create_app(jf, start_runtime=runtime), port=port) as served:
        served.jf = jf  # type: ignore[attr-defined]
        served.secret_key = key  # type: ignore[attr-defined]
        yield served
    jf.close()


@pytest.fixture
def oauth_api(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """A Jackfield whose public URL is its live API server; no runtime."""
    yield from _served(database_url, tmp_path, runtime=False)


@pytest.fixture
def oauth_runtime(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """The same with its runtime, whose supervisor and outbox look every 0.2 s."""
    yield from _served(
        database_url,
        tmp_path,
        runtime=True,
        supervisor_poll_seconds=0.2,
        outbox_poll_seconds=0.2,
        outbox_retry_base_seconds=0.05,
    )
