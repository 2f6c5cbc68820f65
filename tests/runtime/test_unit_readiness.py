"""Readiness and ``last_error`` say what the unit last met, and agree with each other.

A connector delivers through the ``http`` provider to a small API on loopback that
answers the status its path names. What deliveries meet (a 500, a 401) is shown in
``GET /api/runtime`` and ``jackfield runtime status``; a connection test -- which
rewrites the connector (its status), so its unit reloads -- says nothing about
deliveries and must not make the unit look healthier, least of all one that fails
itself. A delivery that works again clears both.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jackfield import connector_registry
from jackfield.kernel import AuthError, MessagingProvider, OutboundMessage, SentMessage
from jackfield.testing import LiveServer

from .conftest import runtime_unit

JACKFIELD = str(Path(sys.executable).with_name("jackfield"))
SETTLE = 1.5
"""Seconds for the supervisor (polling every 0.2 s here) to act on a change."""


class SlowRefusedProvider(MessagingProvider):
    """A delivery that takes its time and is then refused, as one whose OAuth refresh
    fails for good (which rewrites the connector while the delivery is under way)."""

    provider_type: ClassVar[str] = "slow_refused_test"
    display_name: ClassVar[str] = "Slow, refused (tests)"
    started: ClassVar[threading.Event] = threading.Event()
    go_on: ClassVar[threading.Event] = threading.Event()
    held: ClassVar[threading.Event] = threading.Event()
    go_on_held: ClassVar[threading.Event] = threading.Event()

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        if message.text == "quick":  # one the connector's system accepts at once
            return SentMessage(message_id="quick")
        if message.text == "held":  # ... or once the test lets it
            type(self).held.set()
            await asyncio.to_thread(type(self).go_on_held.wait, 30)
            return SentMessage(message_id="held")
        type(self).started.set()
        await asyncio.to_thread(type(self).go_on.wait, 30)
        raise AuthError("the token endpoint said invalid_grant: reconnect the connector")


if not connector_registry.is_registered("messaging", SlowRefusedProvider.provider_type):
    connector_registry.register(SlowRefusedProvider)


async def answer(request: Request) -> JSONResponse:
    code = int(request.path_params["code"])
    return JSONResponse({"answered": code}, code)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    app = Starlette(routes=[Route("/status/{code:int}", answer, methods=["GET", "POST"])])
    with LiveServer(app, lifespan="off") as live:
        yield live.url


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACKFIELD_EGRESS_ALLOWLIST", "127.0.0.1")


@pytest.fixture
def runtime_status(jf: Any) -> Callable[[str], dict[str, Any]]:
    """``runtime_status(connector_id)``: its row of ``jackfield runtime status --json``,
    run as an operator would, in a process of its own."""
    env = {
        **os.environ,
        "JACKFIELD_DATABASE_URL": jf.settings.database_url,
        "JACKFIELD_DATA_DIR": str(jf.settings.data_dir),
        "JACKFIELD_SECRET_KEY": jf.settings.secret_key.get_secret_value(),
    }

    def status(connector_id: str) -> dict[str, Any]:
        done = subprocess.run(
            [JACKFIELD, "runtime", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        items = json.loads(done.stdout)["items"]
        return next(u for u in items if u["connector_id"] == connector_id)

    return status


def http_connector(http: Any, upstream: str, health: int, **auth: str) -> str:
    """An active ``http`` connector whose Test GETs ``/status/{health}``; one attempt
    per message, so a failure is final at once."""
    params = {
        "base_url": upstream,
        "health_path": f"/status/{health}",
        "retry.max_attempts": "1",
        **auth,
    }
    body = {
        "name": f"partner-{uuid.uuid4().hex[:6]}",
        "category": "http",
        "provider_type": "http",
        "params": [{"key": k, "value": v} for k, v in params.items()],
    }
    created = http.post("/api/connectors", json=body)
    assert created.status_code == 201, created.text
    cid = str(created.json()["id"])
    assert http.post(f"/api/connectors/{cid}/test").json()["success"] is (health == 200)
    if health == 200:
        assert http.post(f"/api/connectors/{cid}/activate").status_code == 200
    return cid


def deliver(http: Any, cid: str, code: int, wait_until: Callable[..., Any]) -> None:
    """Send a request the upstream answers with ``code``; wait until it is final."""
    body = {"operation": "request", "payload": {"method": "GET", "path": f"/status/{code}"}}
    sent = http.post(f"/api/connectors/{cid}/messages", json=body)
    assert sent.status_code == 202, sent.text
    envelope = sent.json()["envelope_id"]
    wait_until(lambda: http.get(f"/api/outbox/{envelope}").json()["state"] in ("delivered", "dead"))


def readiness(http: Any, cid: str) -> str | None:
    unit = runtime_unit(http, cid)
    return None if unit is None else str(unit["readiness"])


def shown(unit: dict[str, Any] | None) -> tuple[str, str | None] | None:
    return None if unit is None else (unit["readiness"], unit["last_error"])


def test_a_passing_test_keeps_a_failing_delivery_shown_until_one_works(
    api, tenant, client, wait_until, upstream, runtime_status
):
    with client(api.url, tenant.admin_token) as http:
        cid = http_connector(http, upstream, 200)
        deliver(http, cid, 500, wait_until)
        wait_until(lambda: readiness(http, cid) == "degraded")
        failing = shown(runtime_unit(http, cid))
        assert failing is not None and "500" in str(failing[1]), failing

        assert http.post(f"/api/connectors/{cid}/test").json()["success"]
        time.sleep(SETTLE)  # (its unit reloads: the connector changed)
        assert shown(runtime_unit(http, cid)) == failing  # no delivery has worked since
        assert shown(runtime_status(cid)) == failing

        deliver(http, cid, 200, wait_until)
        wait_until(lambda: shown(runtime_unit(http, cid)) == ("ready", None), timeout=5)
        assert shown(runtime_status(cid)) == ("ready", None)


def test_a_failed_test_never_makes_a_refused_connector_look_ready(
    jf, api, tenant, client, wait_until, upstream, runtime_status
):
    with client(api.url, tenant.admin_token) as http:
        cid = http_connector(http, upstream, 200, **{"auth.mode": "bearer", "auth.token": "T-1"})
        deliver(http, cid, 401, wait_until)
        wait_until(lambda: readiness(http, cid) == "auth_failed")
        refused = shown(runtime_unit(http, cid))
        assert refused is not None and "401" in str(refused[1]), refused

        # the health check is refused now too: the Test fails, as the deliveries do
        health = [{"key": "health_path", "value": "/status/401"}]
        jf.connectors.update(tenant.admin, cid, params=health, merge=True)  # (--param)
        tested = http.post(f"/api/connectors/{cid}/test").json()
        assert tested["success"] is False and "401" in tested["message"]
        assert http.get(f"/api/connectors/{cid}").json()["status"] == "error"
        time.sleep(SETTLE)
        assert shown(runtime_unit(http, cid)) == refused
        assert shown(runtime_status(cid)) == refused


def test_a_delivery_refused_while_its_connector_changes_still_shows(
    api, tenant, client, wait_until, make_connector
):
    """The connector changes while a delivery is under way (a Test here; a token refresh
    that fails for good does the same), so its unit reloads before the delivery ends:
    what that delivery met is still the latest news of the connector."""
    SlowRefusedProvider.started.clear()
    SlowRefusedProvider.go_on.clear()
    cid = make_connector(tenant.admin, "slow_refused_test", retry={"max_attempts": 1})
    with client(api.url, tenant.admin_token) as http:
        body = {"payload": {"text": "hello"}}
        sent = http.post(f"/api/connectors/{cid}/messages", json=body)
        assert sent.status_code == 202, sent.text
        envelope = sent.json()["envelope_id"]
        assert SlowRefusedProvider.started.wait(10)
        assert http.post(f"/api/connectors/{cid}/test").json()["success"]
        time.sleep(SETTLE)  # (its unit reloads meanwhile)
        SlowRefusedProvider.go_on.set()
        wait_until(lambda: http.get(f"/api/outbox/{envelope}").json()["state"] == "dead")
        wait_until(lambda: readiness(http, cid) == "auth_failed", timeout=5)
        assert "invalid_grant" in str(runtime_unit(http, cid)["last_error"])


def test_a_delivery_that_ends_after_a_newer_one_worked_does_not_hide_it(
    jf, api, tenant, client, wait_until, make_connector
):
    """The connector changed (an edit that fixed it, a Test) while two deliveries were
    under way; once one ended, a delivery through the new config worked. The other,
    refused later, is older news: the unit stays ``ready`` with no error, as the latest
    delivery found."""
    provider = SlowRefusedProvider
    for flag in (provider.started, provider.go_on, provider.held, provider.go_on_held):
        flag.clear()
    cid = make_connector(tenant.admin, "slow_refused_test", retry={"max_attempts": 1})
    with client(api.url, tenant.admin_token) as http:

        def send(text: str) -> str:
            sent = http.post(f"/api/connectors/{cid}/messages", json={"payload": {"text": text}})
            assert sent.status_code == 202, sent.text
            return str(sent.json()["envelope_id"])

        def state(envelope: str) -> str:
            return str(http.get(f"/api/outbox/{envelope}").json()["state"])

        # in one write, so that one claim takes both and both are under way at once
        slow, held = jf.send_many(cid, [{"text": "slow"}, {"text": "held"}])
        assert provider.started.wait(10) and provider.held.wait(10)
        assert http.post(f"/api/connectors/{cid}/test").json()["success"]
        time.sleep(SETTLE)  # (its unit reloads meanwhile)
        quick = send("quick")
        provider.go_on_held.set()  # (its worker then takes the new message)
        wait_until(lambda: state(held) == state(quick) == "delivered")
        provider.go_on.set()
        wait_until(lambda: state(slow) == "dead")
        time.sleep(SETTLE)  # (what the unit shows is written within 0.05 s)
        assert shown(runtime_unit(http, cid)) == ("ready", None)
