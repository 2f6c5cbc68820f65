"""Providers that break their contract in a connection test or a poll: the framework
answers with a failed test naming the provider's bug, and never hangs or dies with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from jackfield import ConnectionTestResult, connector_registry
from jackfield.kernel import MessagingProvider


@contextmanager
def registered(cls: type) -> Iterator[type]:
    connector_registry.register(cls)
    try:
        yield cls
    finally:
        connector_registry.unregister(cls.category, cls.provider_type)


def run_app(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as an application's main module, with an embedded Jackfield ``jf`` on
    SQLite in ``tmp_path`` and its org ``who``; fails if the process does not end."""
    prelude = f"""\
        import asyncio, json, time
        from jackfield import ConnectionTestResult, Jackfield, connector_registry
        from jackfield.kernel import InboundEvent, MessagingProvider, PollingSource
        from jackfield.service import Principal

        data = {str(tmp_path / "data")!r}
        jf = Jackfield(database_url=f"sqlite:///{{data}}/app.db", data_dir=data)
        who = Principal.operator(jf.accounts.create_org("acme")["id"], actor="my-app")
    """
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(prelude) + textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACKFIELD_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    try:
        return subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=40
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the application did not exit; it printed: {exc.stdout!r} {exc.stderr!r}")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_connection_test_that_hangs_does_not_keep_the_process_from_exiting(tmp_path, kind):
    """Before, ``jackfield connectors test`` printed the timeout's result and then never
    exited: Python joined the thread still running the test at exit."""
    hang = (
        "time.sleep(3600)"
        if kind == "sync"
        else "return asyncio.sleep(3600)  # an awaitable that never ends"
    )
    done = run_app(
        tmp_path,
        f"""\
        class Hanging(MessagingProvider):
            provider_type = "hanging"
            display_name = "Hanging"

            def test_connection(self):
                {hang}

            def send_message(self, message):
                return None

        connector_registry.register(Hanging)
        created = jf.connectors.create(who, name="h", category="messaging", provider_type="hanging")
        jf.connectors.test_timeout_seconds = 0.5
        print(json.dumps(jf.connectors.test(who, created["id"])), flush=True)
        jf.close()
        """,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["success"] is False and result["status"] == "error"
    assert result["message"] == "the connection test did not finish within 0.5 s"


def test_an_embedded_app_exits_after_stop_although_a_poll_hangs(tmp_path):
    """README: a poll that never returns holds one thread. Before, that thread also kept
    the application from exiting after ``jf.stop()`` and ``jf.close()``."""
    done = run_app(
        tmp_path,
        """\
        class Stuck(MessagingProvider, PollingSource):
            provider_type = "stuck_poll"
            display_name = "Stuck poll"
            poll_interval_seconds = 0.05

            def test_connection(self):
                return ConnectionTestResult(True, "fine")

            def poll(self, cursor):
                print("polling", flush=True)
                time.sleep(3600)  # an HTTP call without a timeout

            def send_message(self, message):
                return None

        connector_registry.register(Stuck)
        created = jf.connectors.create(who, name="s", category="messaging", provider_type="stuck_poll")
        jf.connectors.test(who, created["id"])
        jf.connectors.set_enabled(who, created["id"], True)

        async def main():
            await jf.start()
            await asyncio.sleep(2)
            await jf.stop()

        asyncio.run(main())
        jf.close()
        print("stopped", flush=True)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["polling", "stopped"]


class Misbehaving(MessagingProvider):
    """``test_connection`` does what its ``mode`` param says."""

    provider_type = "misbehaving_test"
    display_name = "Misbehaving"

    def test_connection(self) -> Any:
        mode = self.config["mode"]
        if mode == "systemexit":
            raise SystemExit(3)
        if mode == "keyboard":
            raise KeyboardInterrupt
        if mode == "async_systemexit":

            async def exits() -> None:
                raise SystemExit(4)

            return exits()
        if mode == "unserialisable":
            return ConnectionTestResult(True, "reachable", {"client": object()})
        if mode == "list_details":
            return ConnectionTestResult(True, "reachable", ["not", "a", "dict"])
        if mode == "raw_bytes":
            return ConnectionTestResult(True, "reachable", {"banner": b"\xff\xfe"})
        if mode == "dated":
            return ConnectionTestResult(
                True, "reachable", {"at": __import__("datetime").date(2026, 1, 2), "n": 1}
            )
        raise AssertionError(mode)

    def send_message(self, message: Any) -> None:
        return None


@pytest.fixture
def rest(jf, api, admin_token) -> Iterator[httpx2.Client]:
    with (
        registered(Misbehaving),
        httpx2.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
        ) as client,
    ):
        yield client


def outcome_of(client: httpx2.Client, mode: str) -> tuple[httpx2.Response, dict[str, Any]]:
    """(the test's response, the connector as stored afterwards)."""
    created = client.post(
        "/api/connectors",
        json={
            "name": f"m-{uuid.uuid4().hex[:6]}",
            "category": "messaging",
            "provider_type": "misbehaving_test",
            "config": {"mode": mode},
        },
    )
    assert created.status_code == 201, created.text
    connector = created.json()["id"]
    answer = client.post(f"/api/connectors/{connector}/test")
    return answer, client.get(f"/api/connectors/{connector}").json()


def failed_test_of(client: httpx2.Client, mode: str, message: str) -> dict[str, Any]:
    """The test of a ``mode`` connector is answered as a failed test with ``message``,
    which the connector keeps as its error; returns the connector as stored."""
    answer, stored = outcome_of(client, mode)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "success": False,
        "message": message,
        "details": None,
        "status": "error",
    }
    assert (stored["status"], stored["status_message"]) == ("error", message)
    return stored


@pytest.mark.parametrize(
    ("mode", "raised"),
    [
        ("systemexit", "SystemExit(3)"),
        ("keyboard", "KeyboardInterrupt()"),
        ("async_systemexit", "SystemExit(4)"),
    ],
)
def test_a_provider_stopping_the_process_in_its_test_is_a_failed_test(rest, mode, raised):
    """Before, REST answered a plain-text 500 (and the CLI exited with the provider's code,
    printing nothing); the connector stayed "not tested yet"."""
    message = (
        f"test_connection() raised {raised}: a bug in the provider, which must report a "
        f"failure as a ConnectorError or a failed result, not stop the process"
    )
    assert failed_test_of(rest, mode, message)["last_tested_at"] is not None


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (
            "unserialisable",
            "test_connection() returned details that cannot be shown as JSON "
            "(Unable to serialize unknown type: <class 'object'>): the provider must "
            "return only JSON values (text, numbers, lists, dicts)",
        ),
        (
            "raw_bytes",
            "test_connection() returned details that cannot be shown as JSON ('utf-8' codec "
            "can't decode byte 0xff in position 0: invalid utf-8): the provider must "
            "return only JSON values (text, numbers, lists, dicts)",
        ),
        (
            "list_details",
            "test_connection() returned details that are not a dict but list: "
            "the provider must return a dict or None",
        ),
    ],
)
def test_details_that_are_not_json_make_a_failed_test(rest, mode, message):
    """Before, the test's answer was a 500 although the connector was stored as connected
    (and could be activated on a result nobody saw)."""
    failed_test_of(rest, mode, message)


def test_details_with_dates_are_shown_as_text(rest):
    answer, stored = outcome_of(rest, "dated")
    assert answer.json() == {
        "success": True,
        "message": "reachable",
        "details": {"at": "2026-01-02", "n": 1},
        "status": "connected",
    }
    assert stored["status"] == "connected"
