"""``jackfield outbox ...``, ``runtime ...`` and ``events ...`` as a user runs them: a separate
process on the database a running server (with its runtime) uses at the same time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ulid import ULID

from jackfield.service.events import EventService

JACKFIELD = str(Path(sys.executable).with_name("jackfield"))


@pytest.fixture
def jf(sqlite_url, make_jf):
    return make_jf(sqlite_url)


@pytest.fixture
def cli(jf):
    env = {
        **os.environ,
        "JACKFIELD_DATABASE_URL": jf.settings.database_url,
        "JACKFIELD_DATA_DIR": str(jf.settings.data_dir),
        "JACKFIELD_SECRET_KEY": jf.settings.secret_key.get_secret_value(),
    }

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [JACKFIELD, *args], env=env, capture_output=True, text=True, timeout=60
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    return run


def test_outbox_and_runtime_commands(api, tenant, make_connector, client, wait_until, cli):
    cid = make_connector(tenant.admin)
    doomed, fine = str(ULID()), str(ULID())
    with client(api.url, tenant.admin_token) as http:
        for envelope, extra in ((doomed, {"simulate": "permanent"}), (fine, {})):
            body = {"envelope_id": envelope, "payload": {"text": "x", **extra}}
            assert http.post(f"/api/connectors/{cid}/messages", json=body).status_code == 202

        def state(envelope):
            return http.get(f"/api/outbox/{envelope}").json()["state"]

        wait_until(lambda: state(doomed) == "dead" and state(fine) == "delivered")

        listed = json.loads(cli("outbox", "list", "--json").stdout)["items"]
        assert {m["envelope_id"]: m["state"] for m in listed} == {doomed: "dead", fine: "delivered"}
        table = cli("outbox", "list").stdout  # piped: whole ids, to paste into a command
        assert doomed in table and fine in table and cid in table
        dead = json.loads(cli("outbox", "list", "--state", "dead", "--json").stdout)["items"]
        assert [m["envelope_id"] for m in dead] == [doomed]
        first = cli("outbox", "list", "--limit", "1").stdout  # a page, then the way on
        assert fine in first and doomed not in first
        cursor = first.strip().splitlines()[-1].removeprefix("older messages: --cursor ")
        rest = json.loads(cli("outbox", "list", "--cursor", cursor, "--json").stdout)
        assert [m["envelope_id"] for m in rest["items"]] == [doomed]
        assert rest["next_cursor"] is None
        stale = cli("outbox", "list", "--cursor", "not-a-cursor", ok=False)
        assert stale.returncode == 1 and "cursor" in stale.stderr

        shown = json.loads(cli("outbox", "show", doomed, "--json").stdout)
        assert shown["error_class"] == "PermanentError" and shown["attempts"] == 1

        replayed = json.loads(cli("outbox", "replay", doomed, "--json").stdout)
        assert replayed["envelope_id"] == doomed and replayed["state"] == "pending"
        wait_until(lambda: state(doomed) == "dead")  # the server's runtime tried again
        assert cli("outbox", "replay-dead", cid).stdout.strip() == "replayed 1 dead message"
        wait_until(lambda: state(doomed) == "dead")  # (the cause is not fixed: dead again)
        again = json.loads(cli("outbox", "replay-dead", cid, "--json").stdout)
        assert again == {"connector_id": cid, "replayed": 1}
        wait_until(lambda: state(doomed) == "dead")
        discarded = json.loads(cli("outbox", "discard", doomed, "--json").stdout)
        assert discarded["state"] == "discarded"

        refused = cli("outbox", "replay", fine, ok=False)
        assert refused.returncode == 1
        assert refused.stderr.strip().count("\n") == 0 and "only dead" in refused.stderr
        missing = cli("outbox", "show", str(ULID()), ok=False)
        assert missing.returncode == 1 and "no message" in missing.stderr
        bogus = cli("outbox", "list", "--state", "bogus", ok=False)
        assert bogus.returncode == 1 and bogus.stderr.strip().count("\n") == 0
        assert "one of pending" in bogus.stderr and "dead" in bogus.stderr  # the valid states

        assert cid in cli("runtime", "status").stdout
        units = json.loads(cli("runtime", "status", "--json").stdout)["items"]
        [unit] = [u for u in units if u["connector_id"] == cid]
        assert unit["liveness"] == "running" and unit["readiness"] == "ready"

        requested = json.loads(cli("runtime", "restart", cid, "--json").stdout)
        assert requested["connector_id"] == cid
        wait_until(
            lambda: (
                next(
                    u for u in http.get("/api/runtime").json()["items"] if u["connector_id"] == cid
                )["restart_count"]
                == 1
            )
        )


def test_status_and_outbox_show_every_organization_unless_one_is_named(
    jf, api, tenant, other_tenant, make_connector, cli, wait_until
):
    """The CLI runs the deployment (it holds the database and the key): bare commands
    cover every organization, as the contract writes them; --org narrows."""
    ours = make_connector(tenant.admin)
    theirs = make_connector(other_tenant.admin)
    sent = {cid: jf.send(cid, {"text": "hello"}) for cid in (ours, theirs)}  # units start

    def units(*args):
        return json.loads(cli("runtime", "status", *args, "--json").stdout)["items"]

    everything = wait_until(lambda: (u := units()) and len(u) == 2 and u)
    orgs = {o["id"]: o["name"] for o in jf.accounts.list_orgs()}
    assert {(u["connector_id"], u["organization"]) for u in everything} == {
        (ours, orgs[tenant.org_id]),
        (theirs, orgs[other_tenant.org_id]),
    }
    table = cli("runtime", "status").stdout
    assert ours in table and theirs in table and orgs[tenant.org_id] in table
    named = units("--org", orgs[other_tenant.org_id])
    assert [u["connector_id"] for u in named] == [theirs] and "organization" not in named[0]

    def outbox(*args):
        return json.loads(cli("outbox", "list", *args, "--json").stdout)["items"]

    assert [m["envelope_id"] for m in outbox()] == [sent[theirs], sent[ours]]  # newest first
    assert [m["envelope_id"] for m in outbox("--org", orgs[tenant.org_id])] == [sent[ours]]
    assert [m["envelope_id"] for m in outbox("--connector", theirs)] == [sent[theirs]]


def test_events_list_pages_a_connectors_inbox_newest_first(jf, tenant, make_connector, cli):
    cid = make_connector(tenant.admin)
    other = make_connector(tenant.admin)
    events = EventService(jf.db)
    for n in range(3):
        events.inject(tenant.admin, cid, {"n": n, "note": "x" * 300}, event_id=f"ev-{n}")
    events.inject(tenant.admin, other, {"n": 99}, event_id="elsewhere")

    page = json.loads(cli("events", "list", cid, "--json").stdout)
    assert [e["event_id"] for e in page["items"]] == ["ev-2", "ev-1", "ev-0"]
    assert page["items"][0]["payload"] == {"n": 2, "note": "x" * 300}  # whole in JSON
    assert page["next_cursor"] is None

    first = cli("events", "list", cid, "--limit", "2").stdout  # a table, then the way on
    assert "ev-2" in first and "ev-1" in first and "ev-0" not in first
    assert "…" in first and "x" * 300 not in first  # long payloads cut in the table
    cursor = first.strip().splitlines()[-1].removeprefix("older events: --cursor ")
    rest = json.loads(cli("events", "list", cid, "--cursor", cursor, "--json").stdout)
    assert [e["event_id"] for e in rest["items"]] == ["ev-0"]

    for args, says in (
        (("events", "list", "no-such-connector"), "no connector"),
        (("events", "list", cid, "--cursor", "!!"), "invalid cursor"),
    ):
        refused = cli(*args, ok=False)
        assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0, refused
        assert says in refused.stderr


def test_stored_text_is_printed_as_it_is_not_as_markup(jf, tenant, make_connector, cli):
    """Before, a "[/x]" in a name or payload crashed the table with a rich MarkupError
    traceback, and "[red]...[/red]" lost its brackets."""
    cid = make_connector(tenant.admin)
    jf.connectors.update(tenant.admin, cid, name="bad [/x] name")
    EventService(jf.db).inject(tenant.admin, cid, {"text": "see [/x]"}, event_id="[red]abc[/red]")
    listed = cli("events", "list", cid)
    assert "[red]abc[/red]" in listed.stdout and "see [/x]" in listed.stdout
    for args in (("connectors", "list"), ("connectors", "show", cid)):
        shown = cli(*args)
        assert "bad [/x] name" in shown.stdout and not shown.stderr, shown.stderr


def test_terminal_escapes_in_stored_text_are_shown_escaped_not_sent_to_the_terminal(
    jf, tenant, make_connector, cli
):
    """Before, a webhook body's "type" (and a connector's name) holding escape sequences
    reached the operator's terminal raw: retitled, cleared and recoloured it."""
    cid = make_connector(tenant.admin)
    hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mRED\x9b1m"
    jf.connectors.update(tenant.admin, cid, name=f"n{hostile}")
    EventService(jf.db).inject(tenant.admin, cid, {"x": "\x1b[5mblink"}, event_type=hostile)
    for args in (("events", "list", cid), ("connectors", "list"), ("connectors", "show", cid)):
        shown = cli(*args).stdout
        assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in shown), args
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mRED\\x9b1m" in shown, (args, shown)
    listed = json.loads(cli("events", "list", cid, "--json").stdout)["items"]  # unchanged
    assert listed[0]["event_type"] == hostile and listed[0]["payload"] == {"x": "\x1b[5mblink"}


def test_sim_send_refuses_a_fault_echo_cannot_read(jf, tenant, make_connector, cli):
    """Before, any --simulate was queued and went dead at delivery."""
    cid = make_connector(tenant.admin)
    for fault in ("nonsense", "slow:-5", "transient:abc", "crash:3"):
        refused = cli("sim", "send", cid, "hi", "--simulate", fault, ok=False)
        assert refused.returncode == 2 and "--simulate" in refused.stderr, refused.stderr
    assert jf.runtime.outbox.list(tenant.admin)[0] == []  # nothing was queued
    queued = json.loads(cli("sim", "send", cid, "hi", "--simulate", "transient:1", "--json").stdout)
    assert queued["connector_id"] == cid
