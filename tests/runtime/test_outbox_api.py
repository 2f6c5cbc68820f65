"""The outbox over real HTTP: send, idempotency, validation, tenancy, dead letters.

Runs against the live server (the runtime starts with it) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from ulid import ULID

from jackfield.service.outbox import InvalidMessageError


def _send(http, connector_id, payload, envelope_id=None, **extra):
    body = {"payload": payload, **extra}
    if envelope_id is not None:
        body["envelope_id"] = envelope_id
    return http.post(f"/api/connectors/{connector_id}/messages", json=body)


def _state(http, envelope_id, want):
    message = http.get(f"/api/outbox/{envelope_id}").json()
    return message if message.get("state") == want else None


def test_a_message_is_delivered_once_and_loops_back_as_one_event(
    api, tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin)
    envelope = str(ULID())
    with client(api.url, tenant.user_token) as http:  # the user role may send
        first = _send(http, cid, {"text": "hello"}, envelope)
        assert first.status_code == 202, first.text
        assert first.json()["envelope_id"] == envelope
        assert first.json()["state"] in ("pending", "in_flight", "delivered")

        done = wait_until(lambda: _state(http, envelope, "delivered"))
        assert done["attempts"] == 1
        assert done["last_error"] is None and done["next_attempt_at"] is None

        again = _send(http, cid, {"text": "a different body"}, envelope)
        assert again.status_code == 200, again.text
        assert again.json()["state"] == "delivered" and again.json()["envelope_id"] == envelope

        events = http.get(f"/api/connectors/{cid}/events").json()["items"]
        echoed = [e for e in events if e["event_id"] == f"echo:{envelope}"]
        assert len(echoed) == 1
        assert echoed[0]["event_type"] == "message.received"
        assert echoed[0]["payload"]["text"] == "hello"  # the first body, not the repeat
        assert echoed[0]["payload"]["envelope_id"] == envelope


def test_generated_envelope_ids_are_ulids_and_lowercase_ones_are_the_same_message(
    api, tenant, make_connector, client
):
    cid = make_connector(tenant.admin)
    with client(api.url, tenant.admin_token) as http:
        generated = _send(http, cid, {"text": "x"})
        assert generated.status_code == 202
        assert (
            str(ULID.from_str(generated.json()["envelope_id"])) == generated.json()["envelope_id"]
        )

        chosen = str(ULID())
        assert _send(http, cid, {"text": "y"}, chosen.lower()).status_code == 202
        repeat = _send(http, cid, {"text": "y"}, chosen)
        assert repeat.status_code == 200 and repeat.json()["envelope_id"] == chosen


def test_bad_messages_are_refused_with_clear_errors_and_nothing_is_queued(
    jf, api, tenant, other_tenant, make_connector, client
):
    cid = make_connector(tenant.admin)
    disabled = make_connector(tenant.admin, enable=False)
    foreign = make_connector(other_tenant.admin)
    with client(api.url, tenant.admin_token) as http:
        bad_id = _send(http, cid, {"text": "x"}, "not-a-ulid")
        assert bad_id.status_code == 422
        assert bad_id.json()["error"]["code"] == "invalid_message"
        assert "envelope_id" in bad_id.json()["error"]["message"]

        assert _send(http, cid, ["not", "an", "object"]).status_code == 422
        assert http.post(f"/api/connectors/{cid}/messages", json={}).status_code == 422
        assert _send(http, cid, {"text": "x" * 300_000}).status_code == 422

        assert _send(http, "no-such-connector", {"text": "x"}).status_code == 404
        assert _send(http, foreign, {"text": "x"}).status_code == 404  # like a missing one
        off = _send(http, disabled, {"text": "x"})
        assert off.status_code == 409 and off.json()["error"]["code"] == "conflict"

        # an operation the provider does not offer would only die at delivery
        unknown = _send(http, cid, {"text": "x"}, operation="no_such_op")
        assert unknown.status_code == 422, unknown.text
        error = unknown.json()["error"]
        assert error["code"] == "invalid_message"
        assert "'no_such_op'" in error["message"] and "send_message" in error["message"]
        assert "send_message" in error["remediation"]
        assert _send(http, cid, {"text": "x"}, operation="send_message").status_code == 202
        with pytest.raises(InvalidMessageError, match="no_such_op"):
            jf.send(cid, {"text": "x"}, operation="no_such_op")

        listed = http.get("/api/outbox").json()["items"]
        assert len(listed) == 1  # the one sent with a known operation
    with client(api.url) as anonymous:
        assert _send(anonymous, cid, {"text": "x"}).status_code == 401


def test_payloads_that_could_not_be_read_back_are_refused_and_delivery_goes_on(
    api, tenant, make_connector, client, wait_until
):
    """Python's json reads all of these bodies, but stored they could not be read back
    on the delivery path (orjson) or served by the API: 422 and nothing queued. (An unpaired
    surrogate used to be queued and stop the delivery of every connector.)"""
    cid = make_connector(tenant.admin)
    bodies = {
        '{"payload": {"text": "\\ud800"}}': "not valid Unicode",
        '{"payload": {"n": NaN}}': "NaN",
        '{"payload": {"n": -Infinity}}': "NaN or an infinity",
        '{"payload": {"n": 123456789012345678901234567890}}': "beyond 64 bits",
    }
    with client(api.url, tenant.admin_token) as http:
        for raw, reason in bodies.items():
            refused = http.post(
                f"/api/connectors/{cid}/messages",
                content=raw.encode(),
                headers={"content-type": "application/json"},
            )
            assert refused.status_code == 422, raw
            assert refused.json()["error"]["code"] == "invalid_message", refused.text
            assert reason in refused.json()["error"]["message"], refused.text
        assert http.get("/api/outbox").json()["items"] == []

        fine = _send(http, cid, {"text": "\U0001f600 still delivered", "n": None, "deep": [[1]]})
        assert fine.status_code == 202, fine.text
        assert wait_until(lambda: _state(http, fine.json()["envelope_id"], "delivered"))


def test_messages_are_scoped_to_their_organization(
    api, tenant, other_tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin)
    with client(api.url, tenant.admin_token) as http:
        envelope = _send(http, cid, {"text": "mine"}).json()["envelope_id"]
        wait_until(lambda: _state(http, envelope, "delivered"))
        assert [m["envelope_id"] for m in http.get("/api/outbox").json()["items"]] == [envelope]
        by_state = http.get("/api/outbox", params={"state": "delivered", "connector_id": cid})
        assert [m["envelope_id"] for m in by_state.json()["items"]] == [envelope]
        assert http.get("/api/outbox", params={"state": "dead"}).json()["items"] == []
        assert http.get("/api/outbox", params={"state": "bogus"}).status_code == 422
    with client(api.url, other_tenant.admin_token) as eve:
        missing = eve.get(f"/api/outbox/{envelope}")
        assert missing.status_code == 404 and missing.json()["error"]["remediation"]
        assert eve.get("/api/outbox").json()["items"] == []
        assert eve.post(f"/api/outbox/{envelope}/replay").status_code == 404


def test_another_organizations_secret_is_not_masked_in_this_ones_texts(
    api, tenant, other_tenant, make_connector, client, wait_until
):
    """Masking is per organization: if one organization's texts masked another's secrets,
    its members could send password guesses and see which one comes back masked."""
    mine, theirs = "mine-Autumn-2026", "Globex-Winter-2026"
    quoting = make_connector(tenant.admin, "leaky_test", api_key=mine)
    foreign = make_connector(other_tenant.admin, "leaky_test", api_key=theirs)
    guesses = f"Globex-Summer-2026 | {theirs} | {mine}"
    with client(api.url, tenant.user_token) as http:
        sent = _send(http, quoting, {"text": guesses}).json()["envelope_id"]
        dead = wait_until(lambda: _state(http, sent, "dead"))
        refused = [http.get("/api/outbox", params={"state": s}) for s in (theirs, mine)]
    # the guess is shown as sent; only this organization's own key is masked
    assert f"{theirs} | ********" in dead["last_error"] and mine not in dead["last_error"]
    assert [r.status_code for r in refused] == [422, 422]
    assert theirs in refused[0].text and mine not in refused[1].text
    with client(api.url, other_tenant.user_token) as http:
        sent = _send(http, foreign, {"text": "hello"}).json()["envelope_id"]
        dead = wait_until(lambda: _state(http, sent, "dead"))
    assert theirs not in dead["last_error"] and "(key ********)" in dead["last_error"]


def test_one_envelope_id_on_two_connectors_is_two_messages_told_apart_by_connector_id(
    api, tenant, other_tenant, make_connector, client, wait_until
):
    """Envelope ids are idempotent per connector: the same id on another connector is
    another message, and ``connector_id`` picks one of them for show, replay, discard."""
    dying, fine, foreign = (
        make_connector(tenant.admin),
        make_connector(tenant.admin),
        make_connector(other_tenant.admin),
    )
    envelope = str(ULID())
    with client(api.url, tenant.admin_token) as http:
        assert _send(http, dying, {"simulate": "permanent"}, envelope).status_code == 202
        assert _send(http, fine, {"text": "hi"}, envelope).status_code == 202  # not a repeat

        def state_on(connector_id):
            found = http.get(f"/api/outbox/{envelope}", params={"connector_id": connector_id})
            return found.json().get("state")

        wait_until(lambda: state_on(dying) == "dead" and state_on(fine) == "delivered")
        listed = http.get("/api/outbox").json()["items"]
        assert sorted(m["connector_id"] for m in listed) == sorted([dying, fine])
        assert {m["envelope_id"] for m in listed} == {envelope}

        path = f"/api/outbox/{envelope}"
        refused = http.post(f"{path}/replay", params={"connector_id": fine})
        assert refused.status_code == 409  # the delivered one is left alone
        replayed = http.post(f"{path}/replay", params={"connector_id": dying})
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["connector_id"] == dying
        wait_until(lambda: state_on(dying) == "dead")  # permanent: dead again, same id
        discarded = http.post(f"{path}/discard", params={"connector_id": dying})
        assert discarded.json()["state"] == "discarded"
        assert state_on(fine) == "delivered"
        assert http.get(path, params={"connector_id": foreign}).status_code == 404
        # a connector id in upper case is the same connector (UUIDs ignore case)
        assert state_on(fine.upper()) == "delivered"
        only = http.get("/api/outbox", params={"connector_id": fine.upper()}).json()["items"]
        assert [m["connector_id"] for m in only] == [fine]
        upper = _send(http, fine.upper(), {"text": "again"}, envelope)
        assert upper.status_code == 200  # the same message: nothing sent again


def test_pages_of_the_outbox_list(api, tenant, make_connector, client):
    cid = make_connector(tenant.admin, enable=True)
    with client(api.url, tenant.admin_token) as http:
        sent = [_send(http, cid, {"text": str(i)}).json()["envelope_id"] for i in range(5)]
        first = http.get("/api/outbox", params={"limit": 2}).json()
        second = http.get("/api/outbox", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        third = http.get("/api/outbox", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        seen = [m["envelope_id"] for page in (first, second, third) for m in page["items"]]
        assert seen == sent[::-1]  # newest first, each once
        assert third["next_cursor"] is None
        for bad in ("abc", str(2**64)):  # not a row id: a clear error, not the driver's
            refused = http.get("/api/outbox", params={"cursor": bad})
            assert refused.status_code == 422 and "cursor" in refused.text, bad
            assert "next_cursor" in refused.json()["error"]["remediation"]
            assert refused.json()["error"]["code"] == "invalid_request"  # as on every list
        state = http.get("/api/outbox", params={"state": "nope"})
        assert state.status_code == 422
        error = state.json()["error"]
        assert error["code"] == "invalid_request" and "'nope'" in error["message"]
        assert "dead" in error["remediation"] and "message" not in error["remediation"]
