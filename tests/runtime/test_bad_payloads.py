"""A payload no request or email can carry, sent by any member of the organization:
what the admin sees (a dead letter naming the field, at once) and what the receiver
sees (nothing of it, and the good messages sent after it without delay)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jackfield.app import Jackfield
from jackfield.testing import LiveServer

from .conftest import Tenant, active_connector

SEEN: list[dict[str, Any]] = []


async def record(request: Request) -> Response:
    SEEN.append({"path": request.url.path, "headers": dict(request.headers)})
    return JSONResponse({"ok": True})


class Mailbox:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 OK"


@pytest.fixture
def jf(database_url: str, make_jf: Callable[..., Jackfield]) -> Jackfield:
    return make_jf(database_url, egress_allowlist="127.0.0.1")


@pytest.fixture
def receiver() -> Iterator[str]:
    SEEN.clear()
    app = Starlette(routes=[Route("/{rest:path}", record, methods=["GET", "POST"])])
    with LiveServer(app, lifespan="off") as live:
        yield live.url


@pytest.fixture
def mailbox(smtp_loopback: Callable[[Any], int]) -> tuple[Mailbox, int]:
    box = Mailbox()
    return box, smtp_loopback(box)


def _send(http: Any, connector_id: str, payload: dict[str, Any]) -> str:
    response = http.post(f"/api/connectors/{connector_id}/messages", json={"payload": payload})
    assert response.status_code == 202, response.text
    return str(response.json()["envelope_id"])


def _settled(http: Any, envelopes: list[str]) -> dict[str, Any] | None:
    messages = {e: http.get(f"/api/outbox/{e}").json() for e in envelopes}
    if all(m["state"] in ("delivered", "dead") for m in messages.values()):
        return messages
    return None


def _units(http: Any, connectors: set[str]) -> list[dict[str, Any]] | None:
    """The runtime's units once each of ``connectors`` has one: a unit's row is written
    by its supervisor, which may do so after the unit delivered its first messages."""
    units: list[dict[str, Any]] = http.get("/api/runtime").json()["items"]
    return units if {u["connector_id"] for u in units} >= connectors else None


def test_bad_payloads_die_at_once_and_the_messages_behind_them_are_delivered(
    jf: Jackfield,
    api: LiveServer,
    tenant: Tenant,
    receiver: str,
    mailbox: tuple[Mailbox, int],
    client: Callable[..., Any],
    wait_until: Callable[..., Any],
) -> None:
    """Before, each bad payload crashed the unit three times (with backoff) before it
    went dead, and a good message sent after them stayed pending for minutes."""
    box, port = mailbox
    rest = active_connector(
        jf, tenant.admin, "http", category="http", base_url=receiver, health_path="/health"
    )
    smtp = active_connector(
        jf,
        tenant.admin,
        "smtp",
        category="email",
        host="127.0.0.1",
        port=port,
        from_address="jf@example.org",
    )
    bad = {
        "headers": ({"path": "/bad", "headers": {"X-A": 5}}, rest),
        "params": ({"path": "/bad", "params": "x"}, rest),
        "path": ({"path": "/bad\r\nX: y"}, rest),
        "method": ({"method": "GE T", "path": "/bad"}, rest),
        "headers ": ({"to": "bob@example.com", "subject": "s", "headers": {"X-N": 5}}, smtp),
    }
    with client(api.url, tenant.user_token) as http:  # a member, not an admin
        dead = {field: _send(http, cid, payload) for field, (payload, cid) in bad.items()}
        good = [
            _send(http, rest, {"method": "POST", "path": "/good"}),
            _send(http, smtp, {"to": "bob@example.com", "subject": "good", "text": "hi"}),
        ]
        messages = wait_until(lambda: _settled(http, [*dead.values(), *good]), timeout=15)
        units = wait_until(lambda: _units(http, {rest, smtp}))

    for field, envelope_id in dead.items():
        message = messages[envelope_id]
        assert (message["state"], message["attempts"]) == ("dead", 1), message
        assert message["error_class"] == "PermanentError"
        assert f"payload field {field.strip()!r}" in message["last_error"]
    assert [messages[e]["state"] for e in good] == ["delivered", "delivered"]
    assert [hit["path"] for hit in SEEN if hit["path"] != "/health"] == ["/good"]
    assert len(box.received) == 1 and b"Subject: good" in box.received[0]
    assert {u["connector_id"]: u["restart_count"] for u in units} == {rest: 0, smtp: 0}
