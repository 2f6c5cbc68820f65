"""The REST API while its database is away: a real PostgreSQL behind a real network cut
(a TCP proxy the test closes), and a SQLite file another process holds a write lock on.

A request answers 503 ``database_unavailable`` with ``Retry-After`` and stores nothing;
the log gets a line for the outage, not a traceback per request (nor the server's copy
of it); ``/readyz`` answers within its probe time whatever the database does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError

from jackfield.api import create_app
from jackfield.api.errors import ErrorGuard, fault_response, outages
from jackfield.connectors.webhook import sign
from jackfield.secrets import redactor
from jackfield.testing import LiveServer

from .conftest import active_connector, new_tenant


@contextmanager
def serving(app: Any, caplog: pytest.LogCaptureFixture) -> Iterator[LiveServer]:
    """``app`` on a live server, with the records of uvicorn's loggers in ``caplog`` too
    (uvicorn's logging set-up, made as the server is, keeps them from the root logger)."""
    caplog.set_level(logging.INFO)
    with LiveServer(app) as server:
        uvicorn = logging.getLogger("uvicorn")
        uvicorn.addHandler(caplog.handler)
        try:
            yield server
        finally:
            uvicorn.removeHandler(caplog.handler)


def _outbox_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM outbox_messages")).scalar_one())
    finally:
        engine.dispose()


def _back(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines that say an outage is over."""
    return [r.getMessage() for r in _problems(caplog) if "available again" in r.getMessage()]


def _problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The server's records (not the access log's line per request, nor the client's)."""
    return [
        r
        for r in caplog.records
        if r.name.startswith(("jackfield", "uvicorn")) and r.name != "uvicorn.access"
    ]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_while_the_database_is_cut_requests_answer_503_and_log_one_line(
    database_url, cuttable_proxy, make_jf, client, wait_until, caplog
):
    proxy, through_proxy = cuttable_proxy(database_url)
    jf = make_jf(through_proxy)
    tenant = new_tenant(jf)
    token, cid = tenant.admin_token, active_connector(jf, tenant.admin)
    with (
        serving(create_app(jf, start_runtime=False), caplog) as server,
        client(server.url, token) as http,
    ):
        sent = http.post(f"/api/connectors/{cid}/messages", json={"payload": {"text": "0"}})
        assert sent.status_code == 202, sent.text
        caplog.clear()

        proxy.cut()
        for i in range(30):
            refused = http.post(
                f"/api/connectors/{cid}/messages", json={"payload": {"text": f"cut {i}"}}
            )
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) > 0
            error = refused.json()["error"]
            assert error["code"] == "database_unavailable"
            assert "database is unavailable" in error["message"]
            assert str(proxy.port) not in refused.text  # no driver text (host, port, URL)
            assert "psycopg" not in refused.text.lower()
        for path in ("/api/runtime", "/metrics"):
            answer = http.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["error"]["code"] == "database_unavailable"
            assert "Retry-After" in answer.headers
        started = time.monotonic()
        assert http.get("/readyz").status_code == 503
        assert time.monotonic() - started < 3

        lines = _problems(caplog)
        assert len(lines) <= 2, [r.getMessage() for r in lines]
        assert not [r for r in lines if r.exc_info], "no traceback for an outage"
        assert "database unavailable" in caplog.text

        proxy.restore()
        wait_until(lambda: http.get("/readyz").status_code == 200, timeout=15)
        after = http.post(f"/api/connectors/{cid}/messages", json={"payload": {"text": "1"}})
        assert after.status_code == 202, after.text
        # the first success ends the outage in the log, counted from its first failure
        back = wait_until(lambda: _back(caplog))  # (noted once the answer is sent)
        assert len(back) == 1 and back[0].endswith("(32 failures)"), back
    assert _outbox_rows(database_url) == 2  # nothing of the refused requests was stored


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_while_the_database_is_cut_webhooks_answer_503_and_log_one_line(
    database_url, cuttable_proxy, make_jf, client, wait_until, caplog
):
    """Webhooks, served in front of the app's middleware, answered 500 internal_error
    with a traceback per request: a sender took it for the receiver's fault and the log
    filled with tracebacks. Now as any other request: 503 with ``Retry-After``, one line."""
    proxy, through_proxy = cuttable_proxy(database_url)
    jf = make_jf(through_proxy)
    tenant = new_tenant(jf)
    secret = "whsec_" + base64.b64encode(b"outage-test-webhook-secret-0001").decode()
    hook = jf.connectors.create(
        tenant.admin,
        name="hook",
        category="http",
        provider_type="webhook",
        config={"secret": secret},
    )["id"]
    assert jf.connectors.test(tenant.admin, hook)["success"]
    jf.connectors.set_enabled(tenant.admin, hook, True)

    def deliver(http: Any, n: int) -> Any:
        body = json.dumps({"type": "outage", "n": n}).encode()
        now = int(time.time())
        headers = {
            "webhook-id": f"msg_{n}",
            "webhook-timestamp": str(now),
            "webhook-signature": sign(secret, f"msg_{n}", now, body),
        }
        return http.post(f"/hooks/{hook}", content=body, headers=headers)

    with serving(create_app(jf, start_runtime=False), caplog) as server, client(server.url) as http:
        assert deliver(http, 0).status_code == 200
        caplog.clear()
        proxy.cut()
        for n in range(1, 21):
            refused = deliver(http, n)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "database_unavailable"
            assert int(refused.headers["Retry-After"]) > 0
            assert str(proxy.port) not in refused.text
        lines = _problems(caplog)
        assert len(lines) <= 2, [r.getMessage() for r in lines]
        assert not [r for r in lines if r.exc_info], "no traceback for an outage"
        proxy.restore()
        assert deliver(http, 21).status_code == 200
        # a webhook stored ends the outage in the log (the fast path, outside ErrorGuard)
        back = wait_until(lambda: _back(caplog))  # (noted once the answer is sent)
        assert len(back) == 1 and back[0].endswith("(20 failures)"), back


def _refuse_writes(database_url: str) -> Callable[[Any, Any], None]:
    """A ``connect`` hook that makes a connection answer reads and refuse writes, as a
    full disk or a standby after a failover does."""
    statement = (
        "PRAGMA query_only = 1"
        if database_url.startswith("sqlite")
        else "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
    )

    def refuse(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_conn.commit()

    return refuse


def test_while_the_database_refuses_writes_reads_do_not_end_the_outage_in_the_log(
    database_url, make_jf, client, wait_until, caplog
):
    """A database that answers reads but refuses writes is unavailable all the same:
    every message sent answers 503. The log said 'available again' at each /readyz that
    succeeded and 'unavailable' at the next write -- two lines per probe, and an outage
    that looked over. Only a request that writes ends one a write began."""
    jf = make_jf(database_url)
    tenant = new_tenant(jf)
    token, cid = tenant.admin_token, active_connector(jf, tenant.admin)
    engine, refuse = jf.db.engine, _refuse_writes(database_url)
    with (
        serving(create_app(jf, start_runtime=False), caplog) as server,
        client(server.url, token) as http,
    ):
        assert http.get(f"/api/connectors/{cid}").status_code == 200  # (the token's use noted)
        event.listen(engine, "connect", refuse)
        engine.dispose()
        caplog.clear()
        for i in range(5):
            sent = http.post(f"/api/connectors/{cid}/messages", json={"payload": {"text": str(i)}})
            assert sent.status_code == 503, sent.text
            assert http.get("/readyz").status_code == 200  # (reads in a snapshot)
        lines = [r.getMessage() for r in _problems(caplog)]
        assert len(lines) == 1 and lines[0].startswith("database unavailable"), lines
        event.remove(engine, "connect", refuse)
        engine.dispose()
        sent = http.post(f"/api/connectors/{cid}/messages", json={"payload": {"text": "5"}})
        assert sent.status_code == 202, sent.text
        back = wait_until(lambda: _back(caplog))  # (noted once the answer is sent)
        assert len(back) == 1 and back[0].endswith("(5 failures)"), back


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unexpected_error_is_logged_once_with_its_traceback_redacted(jf, tenant, client, caplog):
    secret = "sk-unexpected-0123456789"
    redactor.add(secret)
    app = create_app(jf, start_runtime=False)

    def fail() -> None:
        raise RuntimeError(f"a bug quoting {secret}")

    app.add_api_route("/api/test-failure", fail)
    with serving(app, caplog) as server, client(server.url, tenant.user_token) as http:
        answer = http.get("/api/test-failure")
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "internal_error"
        assert secret not in answer.text
        time.sleep(0.2)  # (the server logs after it answered)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [(r.name, r.getMessage()) for r in tracebacks]
    assert tracebacks[0].name.startswith("jackfield.")
    assert "Exception in ASGI application" not in caplog.text
    assert "a bug quoting" in caplog.text and secret not in caplog.text


def test_readyz_answers_at_once_while_another_process_holds_the_sqlite_write_lock(
    sqlite_url, make_jf, client
):
    jf = make_jf(sqlite_url)
    with LiveServer(create_app(jf, start_runtime=False)) as server, client(server.url) as http:
        assert http.get("/readyz").status_code == 200
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            holder.execute("UPDATE organizations SET name = name")
            started = time.monotonic()
            ready = http.get("/readyz")
            took = time.monotonic() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert took < 3, f"/readyz took {took:.1f}s"
    assert ready.status_code == 200  # a WAL database still answers reads


async def test_a_request_that_began_before_an_outage_does_not_end_it(caplog):
    """A request that read the database before an outage's first failure and answered
    200 after it (an event stream its browser closed, a slow page) logged 'database
    available again' while the database was still away."""
    refused = _refused_connection()
    gate = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:  # read the database, then
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    def request(path: str) -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": path, "headers": []}

    caplog.set_level(logging.WARNING, logger="jackfield")
    guard = ErrorGuard(slow)
    stream = asyncio.create_task(guard(request("/api/events/stream"), receive, send))
    await asyncio.sleep(0.05)
    try:
        fault_response(request("/api/runtime"), refused)  # the outage's first failure
        gate.set()
        await stream
        assert outages.ongoing
        assert "available again" not in caplog.text
        await guard(request("/readyz"), receive, send)  # a request that began after it
        assert not outages.ongoing
        assert caplog.text.count("available again") == 1
    finally:
        outages.recovered()


def _refused_connection() -> DBAPIError:
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:9/x?connect_timeout=2")
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("port 9 accepted a connection")
