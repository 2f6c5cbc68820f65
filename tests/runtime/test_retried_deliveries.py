"""Delivery is at-least-once: a delivery whose first attempt did its work but never
reported back is tried again. What the admin and the receiver see of such a retry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any, ClassVar

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jackfield import connector_registry
from jackfield.app import Jackfield
from jackfield.connectors.local_fs import LocalFsProvider
from jackfield.kernel import TransientError
from jackfield.testing import LiveServer

from .conftest import Tenant, active_connector

LOST: set[str] = set()


class LostAnswerFs(LocalFsProvider):
    """local_fs whose first delete of each path loses its answer after the work is done,
    as a delete that outlasts its timeout (or a process killed just after it) does."""

    provider_type: ClassVar[str] = "lost_answer_fs_test"
    display_name: ClassVar[str] = "local_fs losing answers (tests)"

    def delete(self, path: str) -> None:
        super().delete(path)
        if path not in LOST:
            LOST.add(path)
            raise TransientError("timed out waiting for the answer")


if not connector_registry.is_registered("storage", "lost_answer_fs_test"):
    connector_registry.register(LostAnswerFs)


class FailsFirst:
    """A receiver that keeps what each attempt sent and fails the first one, as a
    server that did the work but answered 503 (or 451) would look to the sender."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    async def http(self, request: Request) -> Response:
        if request.url.path == "/health":
            return JSONResponse({})
        self.attempts.append(request.headers.get("idempotency-key"))
        return JSONResponse({}, 503 if len(self.attempts) == 1 else 200)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts.append(message_from_bytes(envelope.content, policy=policy.default))
        return "451 4.3.0 try again later" if len(self.attempts) == 1 else "250 OK"


@pytest.fixture
def receiver() -> Iterator[tuple[FailsFirst, str]]:
    fails = FailsFirst()
    app = Starlette(routes=[Route("/{rest:path}", fails.http, methods=["GET", "POST"])])
    with LiveServer(app, lifespan="off") as live:
        yield fails, live.url


@pytest.fixture
def mailbox(smtp_loopback: Callable[[Any], int]) -> tuple[FailsFirst, int]:
    fails = FailsFirst()
    return fails, smtp_loopback(fails)


@pytest.fixture
def jf(database_url: str, make_jf: Callable[..., Jackfield], tmp_path: Path) -> Jackfield:
    LOST.clear()
    return make_jf(database_url, egress_allowlist="127.0.0.1", directory_allowlist=str(tmp_path))


def settled(http: Any, envelope_id: str) -> dict[str, Any] | None:
    message = http.get(f"/api/outbox/{envelope_id}").json()
    return message if message["state"] in ("delivered", "dead") else None


def send(http: Any, connector_id: str, payload: dict[str, Any], operation: str) -> str:
    body = {"payload": payload, "operation": operation}
    response = http.post(f"/api/connectors/{connector_id}/messages", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["envelope_id"])


def test_a_retried_delete_whose_first_attempt_deleted_the_object_is_delivered(
    jf: Jackfield,
    api: Any,
    tenant: Tenant,
    tmp_path: Path,
    client: Callable[..., Any],
    wait_until: Callable[..., Any],
) -> None:
    """Before, the retry found no object and the message went dead ("no object at
    'report.txt'"): a false dead letter for a delete that was done."""
    root = tmp_path / "files"
    root.mkdir()
    (root / "report.txt").write_text("q3")
    cid = active_connector(
        jf, tenant.admin, "lost_answer_fs_test", category="storage", root=str(root)
    )
    with client(api.url, tenant.user_token) as http:
        envelope_id = send(http, cid, {"path": "report.txt"}, "delete_object")
        message = wait_until(lambda: settled(http, envelope_id))
    assert not (root / "report.txt").exists()
    assert (message["state"], message["attempts"]) == ("delivered", 2), message
    assert message["result"] == {"path": "report.txt", "existed": False}


def test_a_retried_request_carries_the_same_idempotency_key(
    jf: Jackfield,
    api: Any,
    tenant: Tenant,
    receiver: tuple[FailsFirst, str],
    client: Callable[..., Any],
    wait_until: Callable[..., Any],
) -> None:
    """Before, the http connector sent nothing that identified the message: a receiver
    that had done the work of the first attempt could not tell the retry from a new
    request."""
    fails, url = receiver
    cid = active_connector(
        jf, tenant.admin, "http", category="http", base_url=url, health_path="/health"
    )
    with client(api.url, tenant.user_token) as http:
        envelope_id = send(http, cid, {"method": "POST", "path": "/orders"}, "request")
        message = wait_until(lambda: settled(http, envelope_id))
    assert (message["state"], message["attempts"]) == ("delivered", 2), message
    assert fails.attempts == [envelope_id, envelope_id]


def test_a_retried_email_carries_the_same_message_id(
    jf: Jackfield,
    api: Any,
    tenant: Tenant,
    mailbox: tuple[FailsFirst, int],
    client: Callable[..., Any],
    wait_until: Callable[..., Any],
) -> None:
    """Before, every attempt made a new Message-ID: a retry after a lost answer reached
    the inbox as a second, different email."""
    fails, port = mailbox
    cid = active_connector(
        jf,
        tenant.admin,
        "smtp",
        category="email",
        host="127.0.0.1",
        port=port,
        from_address="jf@example.org",
    )
    with client(api.url, tenant.user_token) as http:
        payload = {"to": "bob@example.com", "subject": "invoice", "text": "t"}
        envelope_id = send(http, cid, payload, "send_email")
        message = wait_until(lambda: settled(http, envelope_id))
    assert (message["state"], message["attempts"]) == ("delivered", 2), message
    ids = [str(mail["Message-ID"]) for mail in fails.attempts]
    assert ids == [f"<{envelope_id}@example.org>"] * 2
    assert message["result"]["message_id"] == ids[0]
