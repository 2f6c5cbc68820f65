"""Token refresh: ahead of expiry, single-flight across threads and processes through a
database lock (SQLite and PostgreSQL), rotation persisted, failures classified."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from jackfield.kernel import AuthError, Delivered, Envelope, HttpRequest, TransientError

from .conftest import SQLITE_ONLY, client, connect, create_connector, tokens_for

WORKER = r"""
import os, sys, time
from jackfield import connector_registry
from jackfield.connectors.oauth2_http import OAuth2HttpProvider
if not connector_registry.is_registered("http", "oauth2_http"):
    connector_registry.register(OAuth2HttpProvider)
from jackfield.app import Jackfield
from jackfield.settings import Settings

url, data_dir, key, connector_id, go = sys.argv[1:6]
settings = Settings(database_url=url, data_dir=data_dir, secret_key=key)
jf = Jackfield(settings=settings, migrate=False)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.002)
print("token", jf.oauth.access_token_sync(connector_id), flush=True)
jf.close()
"""


def connected(oauth_api: Any, ps: Any, *, expires_in: int = 3600, **config: Any) -> tuple[Any, str]:
    """A connector of a fresh organization that went through the flow; (client, id)."""
    admin, _ = tokens_for(oauth_api.jf)
    api = client(oauth_api.url, admin)
    cid = create_connector(api, ps, **config)
    ps.expires_in = expires_in
    assert connect(api, cid)["status"] == "connected"
    ps.expires_in = 3600
    # the callback's own connection test goes through the token source, so it already
    # refreshes a token that expires within the leeway: count from here on
    ps.calls["refresh_token"] = 0
    return api, cid


def stored(jf: Any, cid: str) -> dict[str, Any]:
    return dict(jf.connectors.resolve(cid)[2]["oauth"])


def test_token_is_refreshed_ahead_of_expiry_only(oauth_api, provider_server):
    jf = oauth_api.jf
    _, fresh = connected(oauth_api, provider_server)
    assert jf.oauth.access_token_sync(fresh) == stored(jf, fresh)["access_token"]
    assert provider_server.calls["refresh_token"] == 0

    _, expiring = connected(oauth_api, provider_server, expires_in=2)
    old = stored(jf, expiring)["access_token"]
    time.sleep(1.1)  # past half its lifetime: inside the refresh margin
    token = jf.oauth.access_token_sync(expiring)
    assert token != old and token in provider_server.access
    assert provider_server.calls["refresh_token"] == 1
    assert stored(jf, expiring)["access_token"] == token
    assert int(stored(jf, expiring)["expires_at"]) > provider_server.access[token] - 5
    assert jf.oauth.access_token_sync(expiring) == token  # fresh now: no second refresh
    assert provider_server.calls["refresh_token"] == 1


def test_rotated_refresh_token_is_persisted(oauth_api, provider_server):
    jf = oauth_api.jf
    _, cid = connected(oauth_api, provider_server)
    provider_server.rotate = True
    first = stored(jf, cid)["refresh_token"]
    jf.oauth.access_token_sync(cid, force_refresh=True)
    second = stored(jf, cid)["refresh_token"]
    assert second != first and provider_server.refresh[second] is True
    assert provider_server.refresh[first] is False
    jf.oauth.access_token_sync(cid, force_refresh=True)  # works only with the rotated one
    assert provider_server.calls["refresh_token"] == 2
    assert jf.connectors.resolve(cid)[0].status == "connected"


@SQLITE_ONLY
def test_refresh_without_refresh_token_keeps_the_old_one(oauth_api, provider_server):
    jf = oauth_api.jf
    _, cid = connected(oauth_api, provider_server)
    provider_server.omit_refresh = True
    before = stored(jf, cid)
    token = jf.oauth.access_token_sync(cid, force_refresh=True)
    after = stored(jf, cid)
    assert token != before["access_token"] and after["access_token"] == token
    assert after["refresh_token"] == before["refresh_token"]


@pytest.mark.parametrize(
    ("database_url", "status", "code"),
    [
        ("sqlite", 400, "invalid_grant"),
        ("postgres", 400, "invalid_grant"),
        ("sqlite", 401, "invalid_client"),
    ],
    indirect=["database_url"],
)
def test_refused_refresh_marks_the_connector_for_reconnect(
    oauth_api, provider_server, status, code
):
    jf = oauth_api.jf
    api, cid = connected(oauth_api, provider_server)
    provider_server.refresh_failure = (status, code)
    with pytest.raises(AuthError) as raised:
        jf.oauth.access_token_sync(cid, force_refresh=True)
    assert "reconnect" in raised.value.remediation.lower()
    view = api.get(f"/api/connectors/{cid}").json()
    assert view["status"] == "error"
    assert code in view["status_message"] and "reconnect" in view["status_message"]
    assert stored(jf, cid)["refresh_token"] not in str(view)
    api.close()


def test_a_refresh_that_fails_for_good_leaves_the_unit_auth_failed(oauth_runtime, provider_server):
    """The failed refresh rewrites the connector (status ``error``), so its unit reloads;
    readiness stays what the delivery met, as DESIGN.md says, not ``ready``."""
    # one attempt per message: a retry would show ``auth_failed`` again by itself
    api, cid = connected(oauth_runtime, provider_server, retry={"max_attempts": 1})
    assert api.post(f"/api/connectors/{cid}/activate").status_code == 200

    def send() -> str:
        body = {"operation": "request", "payload": {"method": "GET", "path": "me"}}
        sent = api.post(f"/api/connectors/{cid}/messages", json=body)
        assert sent.status_code == 202, sent.text
        return str(sent.json()["envelope_id"])

    def unit() -> tuple[str, str | None] | None:
        items = api.get("/api/runtime").json()["items"]
        found = [(u["readiness"], u["last_error"]) for u in items if u["connector_id"] == cid]
        return found[0] if found else None

    def state(envelope: str) -> str:
        return str(api.get(f"/api/outbox/{envelope}").json()["state"])

    first = send()
    eventually(lambda: state(first) == "delivered" and unit() == ("ready", None))
    provider_server.revoke_all_access()  # the API refuses the token; so does the server
    provider_server.refresh_failure = (400, "invalid_grant")  # the refresh token
    second = send()
    eventually(lambda: state(second) == "dead" and (unit() or ("",))[0] == "auth_failed")
    assert api.get(f"/api/connectors/{cid}").json()["status"] == "error"
    refused = unit()
    assert refused is not None and "reconnect" in str(refused[1]), refused
    time.sleep(1.5)  # (the unit reloads: its connector changed)
    assert unit() == refused
    api.close()


def eventually(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@SQLITE_ONLY
def test_transient_refresh_failure_changes_nothing(oauth_api, provider_server):
    jf = oauth_api.jf
    _, cid = connected(oauth_api, provider_server)
    before = stored(jf, cid)
    provider_server.refresh_failure = (503, "temporarily_unavailable")
    with pytest.raises(TransientError):
        jf.oauth.access_token_sync(cid, force_refresh=True)
    assert jf.connectors.resolve(cid)[0].status == "connected"
    assert stored(jf, cid) == before


def test_a_refresh_answered_by_a_proxy_page_is_retried_not_a_reconnect(oauth_api, provider_server):
    """Before: a 200 that was no JSON (a proxy or captive portal page) counted as the
    token endpoint refusing the refresh token: the connector went to error with
    "reconnect", though the credentials were fine and the next refresh worked."""
    jf = oauth_api.jf
    api, cid = connected(oauth_api, provider_server)
    before = stored(jf, cid)
    provider_server.refresh_page = "<html><body>Proxy authentication required</body></html>"
    with pytest.raises(TransientError, match=r"HTTP 200.*not a JSON object"):
        jf.oauth.access_token_sync(cid, force_refresh=True)
    view = api.get(f"/api/connectors/{cid}").json()
    assert view["status"] == "connected", view["status_message"]
    assert stored(jf, cid) == before
    provider_server.refresh_page = None
    assert jf.oauth.access_token_sync(cid, force_refresh=True) != before["access_token"]
    api.close()


def test_concurrent_refresh_from_threads_and_processes_calls_the_server_once(
    oauth_api, provider_server, tmp_path: Path
):
    """Two processes and four threads want a token at once: one refresh, one token.

    Rotation is on, so a second refresh would also spend an already rotated refresh token
    and fail with invalid_grant: single-flight is visible twice over.
    """
    jf = oauth_api.jf
    _, cid = connected(oauth_api, provider_server, expires_in=2)
    expiring_from = time.monotonic() + 1.1  # past half its lifetime: refresh margin
    provider_server.rotate = True
    provider_server.refresh_delay = 0.5  # hold the lock long enough for everyone to queue
    go = tmp_path / "go"
    args = [
        jf.settings.database_url,
        str(jf.settings.data_dir),
        oauth_api.secret_key,
        cid,
        str(go),
    ]
    env = {**os.environ, "JACKFIELD_EGRESS_ALLOWLIST": "127.0.0.1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready", worker.stderr
        tokens: list[str] = []
        barrier = threading.Barrier(4)

        def in_thread() -> None:
            barrier.wait()
            tokens.append(jf.oauth.access_token_sync(cid))

        threads = [threading.Thread(target=in_thread) for _ in range(4)]
        time.sleep(max(0.0, expiring_from - time.monotonic()))
        go.touch()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for worker in workers:
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err
            tokens.append(out.strip().removeprefix("token "))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert provider_server.calls["refresh_token"] == 1
    assert len(tokens) == 6 and len(set(tokens)) == 1
    assert tokens[0] == stored(jf, cid)["access_token"]
    assert jf.connectors.resolve(cid)[0].status == "connected"


@SQLITE_ONLY
def test_a_token_that_lives_under_a_minute_is_not_refreshed_on_every_request(
    oauth_api, provider_server
):
    """Before, anything expiring within a fixed 60 s counted as expiring, so with tokens
    that live 35 s every delivery spent a refresh grant (12 deliveries, 12 refreshes).
    The margin is now at most half the lifetime: a token is used for its first half."""
    jf = oauth_api.jf
    try:
        _, cid = connected(oauth_api, provider_server, expires_in=35)
        provider_server.expires_in = 35  # every grant from here on, refreshes too
        provider = jf.open_provider(cid)

        async def burst() -> list[Any]:
            await provider.open()
            try:
                envelopes = [
                    Envelope(str(ULID()), cid, "request", {"method": "GET", "path": "me"})
                    for _ in range(12)
                ]
                return list(await asyncio.gather(*map(provider.deliver, envelopes)))
            finally:
                await provider.close()

        outcomes = asyncio.run(burst())
    finally:
        provider_server.expires_in = 3600
    assert all(isinstance(o, Delivered) and o.result["status"] == 200 for o in outcomes)
    assert provider_server.calls["refresh_token"] == 0
    oauth = stored(jf, cid)
    assert int(oauth["expires_at"]) - int(oauth["issued_at"]) in (34, 35, 36)


@SQLITE_ONLY
def test_provider_uses_the_token_source_and_recovers_from_401(oauth_api, provider_server):
    jf = oauth_api.jf
    _, cid = connected(oauth_api, provider_server)
    provider = jf.open_provider(cid)
    assert provider.token_source is not None

    async def run() -> tuple[Any, Any]:
        await provider.open()
        try:
            first = await provider.request(HttpRequest("GET", "me"))
            provider_server.revoke_all_access()  # the API now refuses the stored token
            envelope = Envelope(str(ULID()), cid, "request", {"method": "GET", "path": "me"})
            second = await provider.deliver(envelope)
        finally:
            await provider.close()
        return first, second

    first, second = asyncio.run(run())
    assert first.status == 200
    assert isinstance(second, Delivered) and second.result["status"] == 200
    assert provider_server.calls["refresh_token"] == 1
    assert stored(jf, cid)["access_token"] in provider_server.access


@SQLITE_ONLY
def test_a_token_refresh_meanwhile_does_not_make_an_open_form_stale(oauth_api, provider_server):
    """A refresh rewrites the token bookkeeping (expiry, issue time: read-only fields the
    form keeps, never sends); a form opened before it is no stale form. Before, every
    save of an OAuth connector's page opened before a refresh answered 409."""
    from jackfield.connectors.oauth2_http import OAuth2HttpProvider
    from jackfield.kernel import ConflictError
    from jackfield.service import Principal, Role
    from jackfield.service.connector_changes import edit_version

    jf = oauth_api.jf
    api, cid = connected(oauth_api, provider_server)
    admin = Principal(api.get(f"/api/connectors/{cid}").json()["organization_id"], "a", Role.ADMIN)
    schema = OAuth2HttpProvider.config_schema()
    opened = edit_version(jf.connectors.get(admin, cid), schema)
    before = stored(jf, cid)
    token = jf.oauth.access_token_sync(cid, force_refresh=True)
    assert token != before["access_token"] and provider_server.calls["refresh_token"] == 1

    saved = jf.connectors.update(admin, cid, name="partner 2", expected_version=opened)
    assert saved["name"] == "partner 2"
    assert stored(jf, cid)["access_token"] == token  # the save kept the refreshed token

    # a change an admin made meanwhile still makes it stale
    config = jf.connectors.resolve(cid)[2]
    jf.connectors.update(admin, cid, config={**config, "client_id": "other"})
    with pytest.raises(ConflictError):
        jf.connectors.update(admin, cid, name="partner 3", expected_version=opened)
