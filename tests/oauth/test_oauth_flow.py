"""The OAuth2 connect flow over real HTTP: Jackfield's API, a local authorization server
(RFC 6749 + PKCE S256) and a browser played by an HTTP client that follows redirects.

Every rejected state is checked to have cost no token endpoint call: the state is
verified, and its nonce burnt, before the code is exchanged.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sqlalchemy import select, update

from jackfield import connector_registry
from jackfield.connectors.oauth2_http import OAuth2HttpProvider
from jackfield.store import AuditEvent, Connector, ConnectorParam, Organization
from jackfield.store.models_oauth import OAuthState

from .conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    SQLITE_ONLY,
    authorize,
    client,
    create_connector,
    tokens_for,
)


def test_full_flow_stores_tokens_encrypted_and_connects(oauth_api, provider_server, caplog):
    caplog.set_level(logging.DEBUG)
    jf = oauth_api.jf
    admin, _ = tokens_for(jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        start = api.get(f"/api/connectors/{cid}/oauth/authorize").json()["authorize_url"]
        query = parse_qs(urlsplit(start).query)
        assert query["state"][0].startswith(f"{cid}:")
        assert query["code_challenge_method"] == ["S256"]
        assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT_ID]
        assert query["scope"] == ["read write"]
        redirect_uri = f"{oauth_api.url}/api/connectors/oauth/callback/oauth2_http"
        assert query["redirect_uri"] == [redirect_uri]

        callback = httpx2.get(start, follow_redirects=False).headers["location"]
        assert callback.startswith(redirect_uri)
        done = httpx2.get(callback)  # no credentials: the state is the proof
        assert done.status_code == 200, done.text
        result = done.json()
        assert result["success"] is True and result["status"] == "connected"
        assert result["connector_id"] == cid
        assert result["action"] == {"type": "redirect", "url": f"{oauth_api.url}/connectors/{cid}?oauth=done"}

        view = api.get(f"/api/connectors/{cid}").json()
        params = {p["key"]: p for p in view["params"]}
        for key in ("oauth.access_token", "oauth.refresh_token", "client_secret"):
            assert params[key]["secret"] is True and params[key]["value"] == "********"
        assert view["status"] == "connected"
        config = api.get(f"/api/connectors/{cid}/config").json()["config"]
        assert config["oauth"]["access_token"] == "********"
        responses = [start, done.text, str(view), str(config)]

    access = next(iter(provider_server.access))
    refresh = next(iter(provider_server.refresh))
    assert provider_server.calls["authorization_code"] == 1
    assert provider_server.client_auth_seen == ["client_secret_basic"]
    for text in responses:
        assert access not in text and refresh not in text and CLIENT_SECRET not in text
    with jf.db.transaction() as s:
        rows = {
            r.key: r
            for r in s.scalars(select(ConnectorParam).where(ConnectorParam.connector_id == cid))
        }
        audit = " ".join(str(e.details) for e in s.scalars(select(AuditEvent)))
    for key, plain in (("oauth.access_token", access), ("oauth.refresh_token", refresh)):
        assert rows[key].is_secret and rows[key].value.startswith("jf1:")
        assert plain not in rows[key].value
    assert access not in audit and refresh not in audit and CLIENT_SECRET not in audit
    # the stored token really is the one the server issued (decrypted by the service)
    _, _, plain = jf.connectors.resolve(cid)
    assert plain["oauth"]["access_token"] == access and plain["oauth"]["refresh_token"] == refresh
    jf.oauth.access_token_sync(cid, force_refresh=True)  # a refresh is logged too
    assert caplog.records  # the servers' and clients' logs were captured
    for secret in (access, refresh, CLIENT_SECRET, *provider_server.access):
        assert secret not in caplog.text


@SQLITE_ONLY
def test_browser_is_redirected_to_the_connector_page(oauth_api, provider_server):
    admin, _ = tokens_for(oauth_api.jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        callback = authorize(api, cid)
    done = httpx2.get(callback, headers={"Accept": "text/html,*/*"}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == f"{oauth_api.url}/connectors/{cid}?oauth=done"
    assert oauth_api.jf.connectors.resolve(cid)[0].status == "connected"


def _callback_error(url: str) -> dict[str, Any]:
    response = httpx2.get(url)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_oauth_state" and error["remediation"]
    return error


def test_bad_states_are_rejected_without_calling_the_token_endpoint(oauth_api, provider_server):
    jf = oauth_api.jf
    admin, _ = tokens_for(jf)
    base = f"{oauth_api.url}/api/connectors/oauth/callback"
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        # unknown nonce, malformed state, state of another connector id
        assert (
            "unknown" in _callback_error(f"{base}/oauth2_http?code=x&state={cid}:nope")["message"]
        )
        assert "malformed" in _callback_error(f"{base}/oauth2_http?code=x&state=garbage")["message"]
        other = str(uuid.uuid4())
        # used: a successful callback, then the same URL again
        callback = authorize(api, cid)
        assert httpx2.get(callback).json()["success"] is True
        assert provider_server.calls["authorization_code"] == 1
        assert "already used" in _callback_error(callback)["message"]
        # a browser coming back from the provider gets a page, not the API's JSON
        page = httpx2.get(callback, headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
        assert "The connection was not completed" in page.text and "already used" in page.text
        state = parse_qs(urlsplit(callback).query)["state"][0]
        nonce = state.split(":", 1)[1]
        _callback_error(f"{base}/oauth2_http?code=x&state={other}:{nonce}")
        # expired
        callback = authorize(api, cid)
        with jf.db.transaction() as s:
            s.execute(
                update(OAuthState).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        assert "expired" in _callback_error(callback)["message"]
        # swapped: the state of an oauth2_http connector presented to another provider's
        # path is refused, and does not spend the state (tested below)
        callback = authorize(api, cid)
        swapped = callback.replace("/callback/oauth2_http?", "/callback/google_drive?")
        assert "another provider" in _callback_error(swapped)["message"]
        # the connector moved to another organization after the flow started
        callback = authorize(api, cid)
        with jf.db.transaction() as s:
            moved = Organization(name=f"moved-{uuid.uuid4().hex[:6]}")
            s.add(moved)
            s.flush()
            s.execute(update(Connector).where(Connector.id == cid).values(organization_id=moved.id))
        assert "another organization" in _callback_error(callback)["message"]
    assert provider_server.calls["authorization_code"] == 1  # only the one good exchange


def test_a_state_is_used_once_under_concurrency(oauth_api, provider_server):
    admin, _ = tokens_for(oauth_api.jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        callback = authorize(api, cid)
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def hit() -> None:
        barrier.wait()
        statuses.append(httpx2.get(callback, timeout=30).status_code)

    threads = [threading.Thread(target=hit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 400, 400, 400, 400, 400]
    assert provider_server.calls["authorization_code"] == 1


def test_a_callback_on_another_providers_path_leaves_the_state_usable(oauth_api, provider_server):
    """Before, ``/oauth/callback/http`` with a valid state of an ``oauth2_http`` connector
    answered 400 but burnt the state, so the right callback then said "already used"."""
    admin, _ = tokens_for(oauth_api.jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        callback = authorize(api, cid)
        wrong = callback.replace("/callback/oauth2_http?", "/callback/http?")
        assert "another provider" in _callback_error(wrong)["message"]
        assert provider_server.calls["authorization_code"] == 0
        done = httpx2.get(callback)
        assert done.status_code == 200, done.text
        assert done.json()["success"] is True and done.json()["status"] == "connected"
        assert "already used" in _callback_error(callback)["message"]
    assert provider_server.calls["authorization_code"] == 1


@pytest.mark.parametrize("provider_type", ["oauth2_http", "google_drive"])
def test_test_before_connect_says_to_connect(oauth_api, provider_server, provider_type):
    """Before: Test of a connector that was never connected said "OAuth token refresh
    failed: no OAuth refresh token is stored; reconnect", and recorded a failed refresh;
    now it says the connector is not connected yet and how to connect it."""
    admin, _ = tokens_for(oauth_api.jf)
    with client(oauth_api.url, admin) as api:
        if provider_type == "oauth2_http":
            cid = create_connector(api, provider_server)
        else:
            config = {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "token_url": f"{provider_server.url}/token",
                "api_base": f"{provider_server.url}/drive/v3",
                "upload_base": f"{provider_server.url}/upload/drive/v3",
            }
            body = {"name": "Drive", "category": "storage", "provider_type": provider_type}
            created = api.post("/api/connectors", json={**body, "config": config})
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
        tested = api.post(f"/api/connectors/{cid}/test").json()
        assert tested["success"] is False
        assert "not connected yet" in tested["message"], tested
        assert "refresh" not in tested["message"].lower()
        assert "Connect" in tested["details"]["remediation"]
        assert api.get(f"/api/connectors/{cid}").json()["status_message"] == tested["message"]
    with oauth_api.jf.db.transaction() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.target_id == cid)).all()
    assert "connector.oauth_refresh" not in actions
    assert provider_server.calls["refresh_token"] == 0


@SQLITE_ONLY
def test_denied_authorization_marks_the_connector(oauth_api, provider_server):
    admin, _ = tokens_for(oauth_api.jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        callback = authorize(api, cid)
        state = parse_qs(urlsplit(callback).query)["state"][0]
        url = f"{oauth_api.url}/api/connectors/oauth/callback/oauth2_http"
        denied = httpx2.get(url, params={"error": "access_denied", "state": state})
        assert denied.status_code == 200
        assert denied.json()["success"] is False and denied.json()["status"] == "error"
        view = api.get(f"/api/connectors/{cid}").json()
        assert view["status"] == "error" and "access_denied" in view["status_message"]
        assert "reconnect" in view["status_message"]
    assert provider_server.calls["authorization_code"] == 0


@SQLITE_ONLY
def test_a_long_error_description_is_cut_not_refused(oauth_api, provider_server):
    """RFC 6749 sets no length on error_description; before, one over 1000 characters
    answered 422 JSON to the browser, and the connector never heard of the refusal."""
    admin, _ = tokens_for(oauth_api.jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        state = parse_qs(urlsplit(authorize(api, cid)).query)["state"][0]
        url = f"{oauth_api.url}/api/connectors/oauth/callback/oauth2_http"
        said = "AADSTS65004: User declined to consent. " + "Trace ID: 0a3c " * 150
        denied = httpx2.get(
            url,
            params={"error": "access_denied", "error_description": said, "state": state},
            headers={"Accept": "text/html"},
        )
        assert denied.status_code == 303, denied.text
        message = api.get(f"/api/connectors/{cid}").json()["status_message"]
        assert "access_denied: AADSTS65004: User declined to consent." in message
        assert len(message) < 500


@SQLITE_ONLY
def test_failed_exchange_is_reported_without_secrets(oauth_api, provider_server):
    admin, _ = tokens_for(oauth_api.jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server, client_secret="wrong-secret-value-123")
        callback = authorize(api, cid)
        result = httpx2.get(callback).json()
        assert result["success"] is False and result["status"] == "error"
        assert "invalid_client" in result["message"]
        view = api.get(f"/api/connectors/{cid}").json()
        assert view["status"] == "error" and "wrong-secret-value-123" not in str(view)
    assert provider_server.calls["authorization_code"] == 1


@SQLITE_ONLY
def test_start_needs_an_admin_of_the_organization_and_an_oauth_provider(oauth_api, provider_server):
    jf = oauth_api.jf
    admin, user = tokens_for(jf)
    other_admin, _ = tokens_for(jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        plain = api.post(
            "/api/connectors",
            json={
                "name": "fs",
                "category": "storage",
                "provider_type": "local_fs",
                "config": {"root": str(jf.settings.data_dir.parent / "files")},
            },
        ).json()["id"]
        not_oauth = api.get(f"/api/connectors/{plain}/oauth/authorize")
        assert not_oauth.status_code == 400 and not_oauth.json()["error"]["code"] == "not_supported"
    path = f"/api/connectors/{cid}/oauth/authorize"
    assert httpx2.get(oauth_api.url + path).status_code == 401
    with client(oauth_api.url, user) as api:
        assert api.get(path).status_code == 403
    with client(oauth_api.url, other_admin) as api:
        missing = api.get(path)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    with jf.db.transaction() as s:
        assert s.scalars(select(OAuthState)).all() == []


class _DownOAuthProvider(OAuth2HttpProvider):
    """Its exchange uses urllib directly, as plugins do: the service being down is a
    ``URLError``, not one of Jackfield's errors."""

    provider_type = "oauth2_down_test"
    display_name = "OAuth2 (service down, tests)"

    @classmethod
    def exchange_oauth_code(cls, code, config):
        raise URLError(f"[Errno 111] Connection refused (client {config['client_secret']})")


if not connector_registry.is_registered("http", "oauth2_down_test"):
    connector_registry.register(_DownOAuthProvider)


def test_an_unexpected_exchange_error_is_a_failed_connection(oauth_api, provider_server):
    """Before: a 500, no redirect, the connector left draft "not tested yet"."""
    admin, _ = tokens_for(oauth_api.jf)
    with client(oauth_api.url, admin) as api:
        config = {
            "base_url": f"{provider_server.url}/api",
            "authorize_url": f"{provider_server.url}/authorize",
            "token_url": f"{provider_server.url}/token",
            "client_id": CLIENT_ID,
            "client_secret": "down-secret-value-456",
        }
        body = {"name": "Down", "category": "http", "provider_type": "oauth2_down_test"}
        cid = api.post("/api/connectors", json={**body, "config": config}).json()["id"]
        answer = httpx2.get(authorize(api, cid))
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["success"] is False and result["status"] == "error"
        assert "URLError" in result["message"] and "Connection refused" in result["message"]
        assert "down-secret-value-456" not in answer.text and "********" in result["message"]
        view = api.get(f"/api/connectors/{cid}").json()
        assert view["status"] == "error" and "Connection refused" in view["status_message"]
        # a browser is sent back to the connector's page, as after any failed connect
        page = httpx2.get(authorize(api, cid), headers={"accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == f"{oauth_api.url}/connectors/{cid}?oauth=done"


def test_a_connect_under_way_survives_a_key_rotation(oauth_api, provider_server, tmp_path):
    """``keys rotate`` left the PKCE verifier of a pending OAuth state under the old key:
    once the old key was dropped, the browser's return answered 500. The rotation now
    moves it too; a state sealed under a key no longer configured is a refused state
    (4xx, connect again), not a 500."""
    import base64
    import secrets as stdlib_secrets

    from jackfield.app import Jackfield
    from jackfield.service.oauth import state_context
    from jackfield.settings import Settings

    jf = oauth_api.jf
    admin, _ = tokens_for(jf)
    with client(oauth_api.url, admin) as api:
        cid = create_connector(api, provider_server)
        start = api.get(f"/api/connectors/{cid}/oauth/authorize").json()["authorize_url"]
    new_key = base64.urlsafe_b64encode(stdlib_secrets.token_bytes(32)).decode()

    def node(fallbacks: str) -> Jackfield:
        settings = jf.settings.model_copy(
            update={"secret_key": new_key, "secret_key_fallbacks": fallbacks}
        )
        return Jackfield(settings=Settings.model_validate(settings.model_dump()))

    rotating = node(fallbacks=oauth_api.secret_key)
    assert rotating.rotate_keys() == 2  # the client secret, and the pending state
    rotating.close()
    after = node(fallbacks="")  # the old key dropped
    with after.db.transaction() as s:
        state = s.scalars(select(OAuthState).where(OAuthState.connector_id == cid)).one()
        assert after.box.decrypt(state.code_verifier, context=state_context(state.nonce))
    after.close()

    # the server still runs with the old key only: for it, the state is now unreadable
    callback = httpx2.get(start, follow_redirects=False).headers["location"]
    answer = httpx2.get(callback)
    assert answer.status_code == 400, answer.text
    assert "master key" in answer.json()["error"]["message"]
