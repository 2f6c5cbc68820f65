"""Dead letters end to end: retries, permanent failures, exhaustion, redaction, replay,
discard, and the readiness that failing deliveries report."""

from __future__ import annotations

from ulid import ULID

SECRET_KEY = "sk_live_do-not-leak-0123456789"


def _send(http, connector_id, payload, envelope_id=None):
    body = {"payload": payload, "envelope_id": envelope_id or str(ULID())}
    response = http.post(f"/api/connectors/{connector_id}/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()["envelope_id"]


def _message(http, envelope_id):
    return http.get(f"/api/outbox/{envelope_id}").json()


def _settled(http, envelopes):
    """All messages delivered or dead (the others still move)."""
    messages = {e: _message(http, e) for e in envelopes}
    if all(m["state"] in ("delivered", "dead") for m in messages.values()):
        return messages
    return None


def test_twenty_messages_transient_permanent_and_normal(
    api, tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin)
    with client(api.url, tenant.admin_token) as http:
        flaky = _send(http, cid, {"text": "flaky", "simulate": "transient:2"})
        doomed = _send(http, cid, {"text": "doomed", "simulate": "permanent"})
        normal = [_send(http, cid, {"text": f"normal {i}"}) for i in range(18)]
        messages = wait_until(lambda: _settled(http, [flaky, doomed, *normal]), timeout=20)

        assert messages[flaky]["state"] == "delivered"
        assert messages[flaky]["attempts"] == 3  # failed twice, then delivered
        assert messages[doomed]["state"] == "dead"
        assert messages[doomed]["attempts"] == 1  # permanent: never retried
        assert messages[doomed]["error_class"] == "PermanentError"
        assert "simulated permanent failure" in messages[doomed]["last_error"]
        assert all(messages[e]["state"] == "delivered" for e in normal)

        dead = http.get("/api/outbox", params={"state": "dead"}).json()["items"]
        assert [m["envelope_id"] for m in dead] == [doomed]

        # replay: same envelope id, a fresh retry budget; it dies again the same way
        replayed = http.post(f"/api/outbox/{doomed}/replay")
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["envelope_id"] == doomed
        assert replayed.json()["state"] == "pending" and replayed.json()["attempts"] == 0
        again = wait_until(lambda: (m := _message(http, doomed))["state"] == "dead" and m)
        assert again["attempts"] == 1 and again["error_class"] == "PermanentError"

        # only dead messages can be replayed or discarded
        assert http.post(f"/api/outbox/{flaky}/replay").status_code == 409
        assert http.post(f"/api/outbox/{flaky}/discard").status_code == 409
        discarded = http.post(f"/api/outbox/{doomed}/discard")
        assert discarded.status_code == 200 and discarded.json()["state"] == "discarded"
        assert http.post(f"/api/outbox/{doomed}/replay").status_code == 409

        events = http.get(f"/api/connectors/{cid}/events", params={"limit": 200}).json()["items"]
        echoed = sorted(e["event_id"] for e in events)
        assert echoed == sorted(f"echo:{e}" for e in [flaky, *normal])  # none for the dead


def test_dead_letter_admin_actions_need_the_admin_role(
    api, tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin)
    with client(api.url, tenant.user_token) as http:
        doomed = _send(http, cid, {"text": "x", "simulate": "permanent"})
        wait_until(lambda: _message(http, doomed)["state"] == "dead")
        assert http.post(f"/api/outbox/{doomed}/replay").status_code == 403
        assert http.post(f"/api/outbox/{doomed}/discard").status_code == 403
        assert _message(http, doomed)["state"] == "dead"


def test_retries_are_exhausted_by_the_connector_policy_and_errors_never_hold_secrets(
    api, tenant, make_connector, client, wait_until
):
    echo = make_connector(tenant.admin, retry={"max_attempts": "3"})
    leaky = make_connector(tenant.admin, "leaky_test", api_key=SECRET_KEY)
    with client(api.url, tenant.admin_token) as http:
        stubborn = _send(http, echo, {"text": "x", "simulate": "transient:50"})
        # the payload itself carries the secret, and the provider's error quotes both
        leaked = _send(http, leaky, {"text": f"use {SECRET_KEY}", "token": SECRET_KEY})
        messages = wait_until(lambda: _settled(http, [stubborn, leaked]), timeout=20)

        assert messages[stubborn]["state"] == "dead"
        assert messages[stubborn]["attempts"] == 3
        assert messages[stubborn]["error_class"] == "TransientError"
        assert messages[stubborn]["last_error"].startswith("gave up after 3 attempts")

        assert messages[leaked]["state"] == "dead"
        assert messages[leaked]["error_class"] == "PermanentError"
        assert "upstream refused" in messages[leaked]["last_error"]
        assert SECRET_KEY not in messages[leaked]["last_error"]
        assert SECRET_KEY not in http.get("/api/outbox").text
        assert SECRET_KEY not in http.get("/api/runtime").text


def test_auth_failures_retry_and_mark_the_unit_auth_failed(
    api, tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin, retry={"max_attempts": "2"})
    with client(api.url, tenant.admin_token) as http:
        refused = _send(http, cid, {"text": "x", "simulate": "auth"})

        def unit():
            items = http.get("/api/runtime").json()["items"]
            return next((u for u in items if u["connector_id"] == cid), None)

        wait_until(lambda: (u := unit()) and u["readiness"] == "auth_failed")
        dead = wait_until(lambda: (m := _message(http, refused))["state"] == "dead" and m)
        assert dead["attempts"] == 2 and dead["error_class"] == "AuthError"
        assert unit()["liveness"] == "running"  # refused credentials are not a crash

        fine = _send(http, cid, {"text": "fine"})
        wait_until(lambda: _message(http, fine)["state"] == "delivered")
        wait_until(lambda: unit()["readiness"] == "ready")
