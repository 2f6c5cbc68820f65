"""``POST /hooks/{connector_id}`` on the live server, on SQLite and PostgreSQL: verified
on the raw bytes, committed before 2xx, deduplicated, size-capped, hidden when the
connector is unknown or disabled."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
from sqlalchemy import select

from jackfield.connectors.webhook import WebhookProvider
from jackfield.kernel import connector_registry
from jackfield.kernel.errors import ConnectorConfigError
from jackfield.store.models_inbound import InboxEvent

from .conftest import make_active_connector

NEW_SECRET = "whsec_" + base64.b64encode(b"a-brand-new-secret-after-rotate!").decode()


def stored(jf, connector_id: str) -> list[InboxEvent]:
    with jf.db.transaction() as s:
        return list(
            s.scalars(
                select(InboxEvent)
                .where(InboxEvent.connector_id == connector_id)
                .order_by(InboxEvent.id)
            )
        )


def post(api, connector_id: str, body: bytes, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.post(f"{api.url}/hooks/{connector_id}", content=body, headers=headers)


def test_a_signed_webhook_is_committed_before_the_2xx(jf, api, webhook_connector, sign, as_json):
    body = as_json({"type": "invoice.paid", "data": {"id": 7}})
    headers = sign(body, msg_id="msg_one", timestamp=int(time.time()))

    response = post(api, webhook_connector, body, headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0}
    (row,) = stored(jf, webhook_connector)  # read right after the answer: already there
    assert (row.event_id, row.event_type, row.source) == ("msg_one", "invoice.paid", "webhook")
    assert row.payload == {"type": "invoice.paid", "data": {"id": 7}}
    assert int(row.occurred_at.timestamp()) == int(headers["webhook-timestamp"])


def test_the_raw_bytes_are_verified_not_a_reparsed_body(jf, api, webhook_connector, sign):
    # whitespace and key order are part of what was signed
    body = b'{ "b": 1,   "a": 2 }'
    assert post(api, webhook_connector, body, sign(body)).status_code == 200
    reformatted = json.dumps(json.loads(body)).encode()
    assert post(api, webhook_connector, reformatted, sign(body)).status_code == 401


def test_timestamps_just_inside_and_just_outside_the_tolerance(jf, api, webhook_connector, sign):
    body = b'{"type": "ping"}'
    for offset, status in [(-290, 200), (290, 200), (-310, 401), (310, 401)]:
        headers = sign(body, timestamp=int(time.time()) + offset)
        response = post(api, webhook_connector, body, headers)
        assert response.status_code == status, (offset, response.text)
        if status == 401:
            assert response.json()["error"]["code"] == "auth_failed"
    assert len(stored(jf, webhook_connector)) == 2  # only the two inside the tolerance


def test_a_timestamp_that_is_not_plain_digits_is_401(
    jf, api, webhook_connector, sign, webhook_secret
):
    """Python's int() reads "1700_000000" and "+1700000000": before,
    such a (correctly signed) timestamp was accepted; the spec says an integer."""
    from .conftest import signature

    body = b'{"type": "ping"}'
    now = str(int(time.time()))
    for stamp in (f"{now[:4]}_{now[4:]}", f"+{now}"):
        headers = {**sign(body, msg_id="msg_ts"), "webhook-timestamp": stamp}
        headers["webhook-signature"] = signature(webhook_secret, "msg_ts", stamp, body)
        response = post(api, webhook_connector, body, headers)
        assert response.status_code == 401, (stamp, response.text)
        assert "ASCII digits" in response.json()["error"]["message"]
    assert stored(jf, webhook_connector) == []


def test_a_timestamp_of_hundreds_of_digits_is_401_not_a_crash(jf, api, webhook_connector, sign):
    """Anyone may send any timestamp (it is read before the signature): before, 400
    digits raised OverflowError and 5000 ValueError (int()'s digit limit), a 500."""
    body = b'{"type": "ping"}'
    for digits in (20, 400, 5000):
        headers = {**sign(body), "webhook-timestamp": "9" * digits}
        response = post(api, webhook_connector, body, headers)
        assert response.status_code == 401, (digits, response.text)
        assert response.json()["error"]["code"] == "auth_failed"
    assert stored(jf, webhook_connector) == []


def test_a_repeated_id_is_answered_2xx_and_processed_once(jf, api, webhook_connector, sign):
    body = b'{"type": "order.created"}'
    headers = sign(body, msg_id="msg_repeat")
    first = post(api, webhook_connector, body, headers)
    again = post(api, webhook_connector, body, sign(body, msg_id="msg_repeat"))
    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert again.status_code == 200 and again.json() == {"accepted": 0, "duplicates": 1}
    assert [r.event_id for r in stored(jf, webhook_connector)] == ["msg_repeat"]


def test_concurrent_repeats_of_one_id_store_one_row(jf, api, webhook_connector, sign):
    body = b'{"type": "burst"}'
    headers = sign(body, msg_id="msg_burst")
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: post(api, webhook_connector, body, headers), range(32)))
    assert {r.status_code for r in responses} == {200}
    assert sum(r.json()["accepted"] for r in responses) == 1
    assert len(stored(jf, webhook_connector)) == 1


def test_a_bad_signature_is_401_with_nothing_stored(jf, api, webhook_connector, sign):
    body = b'{"type": "forged"}'
    for tampered in [
        {"webhook-signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
        {"webhook-signature": ""},
        {"webhook-id": ""},
    ]:
        response = post(api, webhook_connector, body, {**sign(body), **tampered})
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == "auth_failed" and error["message"] and error["remediation"]
    assert stored(jf, webhook_connector) == []


def test_rotated_keys_one_valid_signature_among_several(jf, api, webhook_connector, sign):
    body = b'{"type": "rotated"}'
    valid = sign(body, msg_id="msg_rot")
    other = sign(body, secret=NEW_SECRET, msg_id="msg_rot", timestamp=valid["webhook-timestamp"])
    only_other = {**valid, "webhook-signature": other["webhook-signature"]}
    both = {
        **valid,
        "webhook-signature": f"{other['webhook-signature']} {valid['webhook-signature']}",
    }

    assert post(api, webhook_connector, body, only_other).status_code == 401
    assert post(api, webhook_connector, body, both).status_code == 200
    assert [r.event_id for r in stored(jf, webhook_connector)] == ["msg_rot"]


def test_a_body_over_one_mebibyte_is_413_with_nothing_stored(jf, api, webhook_connector, sign):
    limit = 1024 * 1024
    at_limit = b'{"pad": "' + b"x" * (limit - 11) + b'"}'
    assert len(at_limit) == limit
    over = b'{"pad": "' + b"x" * (limit - 10) + b'"}'
    response = post(api, webhook_connector, over, sign(over))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert "smaller events" in response.json()["error"]["remediation"]
    assert stored(jf, webhook_connector) == []
    assert post(api, webhook_connector, at_limit, sign(at_limit)).status_code == 200


def test_a_chunked_body_over_the_limit_is_413(jf, api, webhook_connector, sign):
    over = b"x" * (1024 * 1024 + 1)

    def chunks():
        for start in range(0, len(over), 65536):
            yield over[start : start + 65536]

    response = httpx2.post(
        f"{api.url}/hooks/{webhook_connector}", content=chunks(), headers=sign(over)
    )
    assert response.status_code == 413
    assert stored(jf, webhook_connector) == []


def test_a_signed_body_that_is_not_json_is_400_with_nothing_stored(
    jf, api, webhook_connector, sign
):
    body = b"hello"
    response = post(api, webhook_connector, body, sign(body))
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]["message"]
    assert stored(jf, webhook_connector) == []


def test_signed_bodies_that_could_not_be_served_back_are_400_with_nothing_stored(
    jf, api, webhook_connector, sign, org_token
):
    """Python's json reads these, but stored they would break the connector's event
    list (or, on PostgreSQL, the group commit they share with other requests)."""
    deep = b'{"a":' * 70 + b"1" + b"}" * 70
    very_deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    bodies = {
        deep: "deeper than 64 levels",
        very_deep: "deeper than 64 levels",
        b'{"text": "\\ud800"}': "not valid Unicode",
        b'{"type": "a\\u0000b"}': "NUL",
    }
    for body, reason in bodies.items():
        response = post(api, webhook_connector, body, sign(body))
        assert response.status_code == 400, (body[:20], response.text)
        assert reason in response.json()["error"]["message"]
    assert stored(jf, webhook_connector) == []

    fine = b'{"type": "ok", "text": "\\ud83d\\ude00 a\\u0000b", "n": NaN}'
    assert post(api, webhook_connector, fine, sign(fine)).status_code == 200
    listed = httpx2.get(
        f"{api.url}/api/connectors/{webhook_connector}/events",
        headers={"Authorization": f"Bearer {org_token}"},
    )
    assert listed.status_code == 200
    (event,) = listed.json()["items"]
    assert event["payload"] == {"type": "ok", "text": "\U0001f600 a\x00b", "n": None}


def test_unknown_and_disabled_connectors_look_the_same(jf, api, admin, webhook_connector, sign):
    body = b'{"type": "x"}'
    unknown = post(api, "00000000-0000-0000-0000-000000000000", body, sign(body))
    assert post(api, webhook_connector, body, sign(body)).status_code == 200
    jf.connectors.set_enabled(admin, webhook_connector, False)
    disabled = post(api, webhook_connector, body, sign(body))  # cached provider: still refused
    junk = post(api, "not%00a-uuid", body, sign(body))  # a NUL must never reach SQL
    assert unknown.status_code == disabled.status_code == junk.status_code == 404
    assert unknown.json()["error"]["code"] == disabled.json()["error"]["code"] == "not_found"
    assert len(stored(jf, webhook_connector)) == 1


def test_an_anonymous_sender_cannot_test_guesses_of_any_organizations_secret(jf, api, admin, sign):
    """Anyone may POST to /hooks/{id}; if its errors masked every organization's secrets,
    a hex or UUID-like API key would come back masked when guessed as the id."""
    key = "5f0c2a9e-7d41-4b8a-9c3e-1a2b3c4d5e6f"
    jf.connectors.create(
        admin,
        name="vault",
        category="http",
        provider_type="vault_test",
        config={"url": "https://vault.example.com", "token": key},
    )
    body = b"{}"
    guessed, other = (post(api, guess, body, sign(body)) for guess in (key, key[:-1] + "0"))
    assert guessed.status_code == other.status_code == 404
    assert guessed.json() == other.json() and "****" not in guessed.text


def test_a_trailing_slash_is_the_same_endpoint_not_a_redirect(jf, api, webhook_connector, sign):
    body = b'{"type": "slash"}'
    response = post(api, webhook_connector + "/", body, sign(body))
    assert response.status_code == 200, response.text  # senders do not follow a 307 POST
    assert [row.event_type for row in stored(jf, webhook_connector)] == ["slash"]


def test_the_connector_id_in_upper_case_is_the_same_endpoint(jf, api, webhook_connector, sign):
    body = b'{"type": "upper"}'
    response = post(api, webhook_connector.upper(), body, sign(body))
    assert response.status_code == 200, response.text
    assert [row.event_type for row in stored(jf, webhook_connector)] == ["upper"]


class RestlessWebhook(WebhookProvider):
    """A webhook connector whose config changes while each request is verified (an
    admin editing it at that moment, twice in a row)."""

    provider_type = "restless_webhook_test"
    during_verification = staticmethod(lambda: None)

    def parse_webhook(self, request):
        events = super().parse_webhook(request)
        RestlessWebhook.during_verification()
        return events


if not connector_registry.is_registered("http", RestlessWebhook.provider_type):
    connector_registry.register(RestlessWebhook)


def test_a_connector_that_keeps_changing_during_verification_is_503_retry(
    jf, api, admin, webhook_secret, sign
):
    cid = make_active_connector(
        jf, admin, RestlessWebhook.provider_type, {"secret": webhook_secret}
    )
    edits = iter(range(100))
    RestlessWebhook.during_verification = lambda: jf.connectors.update(
        admin, cid, name=f"edited-{next(edits)}"
    )
    try:
        body = b'{"type": "late"}'
        response = post(api, cid, body, sign(body))
    finally:
        RestlessWebhook.during_verification = lambda: None
    # a 404 would tell the sender the endpoint is gone; this is "try again"
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "transient"
    assert stored(jf, cid) == []
    assert post(api, cid, body, sign(body)).status_code == 200  # the retry gets in


def test_a_tolerance_over_a_day_is_refused(jf, admin, webhook_secret):
    """Beyond a day a captured request could outlive its id in the inbox and replay."""
    with pytest.raises(ConnectorConfigError) as refused:
        jf.connectors.create(
            admin,
            name="lax",
            category="http",
            provider_type="webhook",
            config={"secret": webhook_secret, "tolerance_seconds": 86_401},
        )
    assert "at most 86400 seconds" in refused.value.field_errors["tolerance_seconds"]


def test_a_connector_that_is_not_a_webhook_is_404(jf, api, admin, sign):
    created = jf.connectors.create(
        admin, name="echo", category="messaging", provider_type="echo", config={}
    )
    jf.connectors.test(admin, created["id"])
    jf.connectors.set_enabled(admin, created["id"], True)
    body = b"{}"
    assert post(api, created["id"], body, sign(body)).status_code == 404


def test_a_new_secret_takes_effect_at_once(jf, api, admin, webhook_connector, sign):
    body = b'{"type": "x"}'
    assert post(api, webhook_connector, body, sign(body)).status_code == 200  # cached now
    jf.connectors.update(admin, webhook_connector, config={"secret": NEW_SECRET})
    assert post(api, webhook_connector, body, sign(body)).status_code == 401
    assert post(api, webhook_connector, body, sign(body, secret=NEW_SECRET)).status_code == 200
    assert len(stored(jf, webhook_connector)) == 2


def test_a_sender_that_switches_to_the_new_secret_at_once_is_accepted_at_once(
    jf, api, admin, webhook_connector, sign
):
    """Before, the cached provider refused the new signature until a request signed
    with the old secret came by, or for up to 30 s."""
    body = b'{"type": "x"}'
    assert post(api, webhook_connector, body, sign(body)).status_code == 200  # cached now
    jf.connectors.update(admin, webhook_connector, config={"secret": NEW_SECRET})
    assert post(api, webhook_connector, body, sign(body, secret=NEW_SECRET)).status_code == 200
    assert post(api, webhook_connector, body, sign(body)).status_code == 401  # the old one
    assert len(stored(jf, webhook_connector)) == 2


def test_a_second_secret_edit_within_a_second_takes_effect_at_once(
    jf, api, admin, webhook_connector, sign, webhook_secret
):
    """Before, the "did the connector change?" question was asked at most once a second:
    the request right after a second edit was refused 401 although correctly signed."""
    body = b'{"type": "x"}'
    assert post(api, webhook_connector, body, sign(body)).status_code == 200  # cached now
    for secret in (NEW_SECRET, webhook_secret, NEW_SECRET):
        jf.connectors.update(admin, webhook_connector, config={"secret": secret})
        response = post(api, webhook_connector, body, sign(body, secret=secret))
        assert response.status_code == 200, response.text
    assert len(stored(jf, webhook_connector)) == 4


def test_the_secret_never_appears_in_responses(
    jf, api, webhook_connector, sign, webhook_secret, org_token
):
    body = b'{"type": "x"}'
    answers = [
        post(api, webhook_connector, body, {**sign(body), "webhook-signature": "v1,bad"}),
        post(api, webhook_connector, b"nope", sign(b"nope")),
        post(api, webhook_connector, body, sign(body)),
        httpx2.get(
            f"{api.url}/api/connectors/{webhook_connector}/events",
            headers={"Authorization": f"Bearer {org_token}"},
        ),
    ]
    key_part = webhook_secret.removeprefix("whsec_")
    for answer in answers:
        assert key_part not in answer.text


def test_without_the_fast_path_the_documented_route_answers_the_same(jf, webhook_connector, sign):
    """An app run without lifespan events has no fast path: the FastAPI route serves."""
    import socket
    import threading

    import uvicorn

    from jackfield.api import create_app

    app = create_app(jf, start_runtime=False)
    assert "/hooks/{connector_id}" in app.openapi()["paths"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}/hooks/{webhook_connector}"
        body = b'{"type": "slow.path"}'
        ok = httpx2.post(url, content=body, headers=sign(body, msg_id="msg_slow"))
        slash = httpx2.post(url + "/", content=body, headers=sign(body, msg_id="msg_slash"))
        bad = httpx2.post(url, content=body, headers={**sign(body), "webhook-signature": "v1,x"})
        junk = httpx2.post(url.replace(webhook_connector, "not%00an-id"), content=body)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ingress = getattr(app.state, "webhook_ingress", None)
        if ingress is not None:
            ingress.close()
    assert ok.status_code == 200 and ok.json() == {"accepted": 1, "duplicates": 0}
    assert slash.status_code == 200 and slash.json() == {"accepted": 1, "duplicates": 0}
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "auth_failed"
    assert junk.status_code in (400, 404)
    assert [r.event_id for r in stored(jf, webhook_connector)] == ["msg_slow", "msg_slash"]
