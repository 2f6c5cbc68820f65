"""``jackfield sim inject`` / ``sim send`` through the real command in a subprocess, on the
same database as a running server (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2
from sqlalchemy import func, select

from jackfield.store.models_inbound import InboxEvent
from jackfield.store.models_outbox import OutboxMessage

from .conftest import make_active_connector

JACKFIELD = str(Path(sys.executable).parent / "jackfield")


def run_cli(jf, *args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The ``jackfield`` command on ``jf``'s database (``path``: a plugin directory)."""
    env = {
        **os.environ,
        "JACKFIELD_DATABASE_URL": jf.settings.database_url,
        "JACKFIELD_DATA_DIR": str(jf.settings.data_dir),
        "JACKFIELD_SECRET_KEY": jf.settings.secret_key.get_secret_value(),
    }
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [JACKFIELD, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def inbox(jf, connector_id: str) -> list[InboxEvent]:
    with jf.db.transaction() as s:
        query = select(InboxEvent).where(InboxEvent.connector_id == connector_id)
        return list(s.scalars(query.order_by(InboxEvent.id)))


def test_sim_inject_reaches_the_inbox_and_a_live_stream(jf, api, webhook_connector, org_token):
    """The CLI is another process: the server's stream finds the row by polling."""
    headers = {"Authorization": f"Bearer {org_token}"}
    with (
        httpx2.Client(timeout=httpx2.Timeout(10, read=15)) as client,
        client.stream("GET", f"{api.url}/api/events/stream", headers=headers) as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # subscribed
        result = run_cli(
            jf, "sim", "inject", webhook_connector, '{"type": "order.created", "n": 1}', "--json"
        )
        assert result.returncode == 0, result.stderr
        printed = json.loads(result.stdout)
        data = next(line for line in lines if line.startswith("data:"))
    streamed = json.loads(data.removeprefix("data:"))
    assert streamed["event_id"] == printed["event_id"]
    assert (printed["event_type"], printed["payload"]) == (
        "order.created",
        {"type": "order.created", "n": 1},
    )
    (row,) = inbox(jf, webhook_connector)
    assert (row.source, row.event_id) == ("simulator", printed["event_id"])


def test_sim_inject_user_errors_are_one_line_and_store_nothing(jf, webhook_connector):
    bad_json = run_cli(jf, "sim", "inject", webhook_connector, "{not json")
    not_object = run_cli(jf, "sim", "inject", webhook_connector, "[1, 2]")
    unknown = run_cli(jf, "sim", "inject", "00000000-0000-0000-0000-000000000000", "{}")
    surrogate = run_cli(jf, "sim", "inject", webhook_connector, '{"t": "\\ud800"}')
    nan = run_cli(jf, "sim", "inject", webhook_connector, '{"n": NaN}')
    long_type = run_cli(jf, "sim", "inject", webhook_connector, "{}", "--type", "t" * 101)
    deep = run_cli(jf, "sim", "inject", webhook_connector, '{"a": ' + "[" * 100_000)
    for result in (bad_json, not_object, unknown, surrogate, nan, long_type, deep):
        assert result.returncode == 1
        assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
    # the hints are about the payload given, not about the connector's parameters
    assert "not valid JSON" in bad_json.stderr and "one JSON object" in bad_json.stderr
    assert "must be a JSON object" in not_object.stderr
    assert "not valid Unicode" in surrogate.stderr and "NaN" in nan.stderr
    assert "event_type must be 1 to 100 characters" in long_type.stderr
    assert "nests too deep" in deep.stderr
    hints = bad_json.stderr + not_object.stderr + surrogate.stderr + nan.stderr + long_type.stderr
    assert "parameters" not in hints
    assert inbox(jf, webhook_connector) == []


def test_sim_inject_of_a_known_event_id_says_nothing_was_stored(jf, webhook_connector):
    first = run_cli(jf, "sim", "inject", webhook_connector, '{"n": 1}', "--event-id", "evt-1")
    assert first.returncode == 0 and first.stdout.startswith("injected"), first.stderr
    again = ["sim", "inject", webhook_connector, '{"n": 2}', "--event-id", "evt-1"]
    repeated = run_cli(jf, *again)
    assert repeated.returncode == 0  # idempotent, as a redelivery is
    assert repeated.stdout.startswith("already stored, nothing injected: ")
    as_json = json.loads(run_cli(jf, *again, "--json").stdout)
    assert as_json["duplicate"] is True and as_json["payload"] == {"n": 1}
    [row] = inbox(jf, webhook_connector)
    assert row.payload == {"n": 1}


def test_sim_send_is_delivered_by_the_running_server(jf, api, admin):
    """``sim send`` queues; the server's runtime delivers to echo, which loops it back."""
    echo = jf.connectors.create(
        admin, name="echo", category="messaging", provider_type="echo", config={}
    )["id"]
    jf.connectors.test(admin, echo)
    jf.connectors.set_enabled(admin, echo, True)

    result = run_cli(jf, "sim", "send", echo, "hello from the cli", "--json")
    assert result.returncode == 0, result.stderr
    envelope_id = json.loads(result.stdout)["envelope_id"]

    deadline = time.monotonic() + 15
    while not inbox(jf, echo) and time.monotonic() < deadline:
        time.sleep(0.1)
    (event,) = inbox(jf, echo)
    assert event.event_type == "message.received"
    assert event.payload["text"] == "hello from the cli"
    assert event.payload["envelope_id"] == envelope_id


def test_sim_send_can_ask_echo_for_a_fault(jf, api, admin):
    """``--simulate`` exercises retries and dead letters with no external system."""
    echo = jf.connectors.create(
        admin, name="faulty", category="messaging", provider_type="echo", config={}
    )["id"]
    jf.connectors.test(admin, echo)
    jf.connectors.set_enabled(admin, echo, True)

    sent = {}
    for fault in ("permanent", "transient:1"):
        result = run_cli(jf, "sim", "send", echo, fault, "--simulate", fault, "--json")
        assert result.returncode == 0, result.stderr
        sent[fault] = json.loads(result.stdout)["envelope_id"]

    def message(fault: str) -> dict:
        return jf.runtime.outbox.get(admin, sent[fault])

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if message("permanent")["state"] == "dead" and message("transient:1")["state"] == (
            "delivered"
        ):
            break
        time.sleep(0.1)
    dead, retried = message("permanent"), message("transient:1")
    assert (dead["state"], dead["error_class"], dead["attempts"]) == ("dead", "PermanentError", 1)
    assert (retried["state"], retried["attempts"]) == ("delivered", 2)


def test_a_message_to_a_connector_that_only_receives_is_refused(
    jf, api, webhook_connector, org_token
):
    """A webhook connector sends nothing: ``sim send`` and ``POST …/messages`` say so at
    once (409) and queue nothing, instead of a dead letter at delivery."""
    result = run_cli(jf, "sim", "send", webhook_connector, "hello")
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "only receives" in result.stderr
    refused = httpx2.post(
        f"{api.url}/api/connectors/{webhook_connector}/messages",
        json={"payload": {"text": "hello"}},
        headers={"Authorization": f"Bearer {org_token}"},
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    assert "only receives" in refused.json()["error"]["message"]
    with jf.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0


POLL_ONLY = """\
from jackfield.kernel import ConnectorNotSupportedError, MessagingProvider, PollingSource


class PollOnly(MessagingProvider, PollingSource):
    provider_type = "poll_only_test"
    display_name = "Poll only (tests)"
    sends = False

    def poll(self, cursor):
        return [], cursor

    def send_message(self, message):
        raise ConnectorNotSupportedError("it only receives")
"""


def test_a_polling_connector_that_only_receives_says_it_polls(
    jf, api, admin, org_token, install_plugin, tmp_path
):
    """Before, a connector that takes its events in by polling was refused as one that
    takes them in by webhooks."""
    install_plugin(
        "poll-only-test", {"poll_only_test": POLL_ONLY}, {"poll_only": "poll_only_test:PollOnly"}
    )
    from poll_only_test import PollOnly  # type: ignore[import-not-found]

    if not jf.registry.is_registered("messaging", "poll_only_test"):
        jf.registry.register(PollOnly)
    try:
        cid = make_active_connector(jf, admin, "poll_only_test", {}, category="messaging")
        result = run_cli(jf, "sim", "send", cid, "hello", path=tmp_path / "poll-only-test")
        assert result.returncode == 1, result.stdout
        assert "only receives" in result.stderr
        assert "takes events in (polling)" in result.stderr, result.stderr
        assert "webhooks" not in result.stderr
        refused = httpx2.post(
            f"{api.url}/api/connectors/{cid}/messages",
            json={"payload": {"text": "hello"}},
            headers={"Authorization": f"Bearer {org_token}"},
        )
        assert refused.status_code == 409
        assert "takes events in (polling)" in refused.json()["error"]["remediation"]
    finally:
        jf.registry.unregister("messaging", "poll_only_test")
