"""The ``webhook`` provider alone: Standard Webhooks signatures, tolerance, parsing and
config validation, through its public ``parse_webhook`` and ``sign``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest

from jackfield.connectors.webhook import WebhookProvider, sign
from jackfield.kernel import AuthError, ConnectorConfigError, PermanentError, WebhookRequest

# The test vector published with the Standard Webhooks spec (and Svix's libraries).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# A vector derived once with hmac/hashlib and frozen here, so the format cannot drift.
OUR_SECRET = "whsec_amFja2ZpZWxkLWluYm91bmQtdGVzdHMta2V5LTAwMDE="
OUR_ID = "msg_2Kq7jackfield"
OUR_TIMESTAMP = 1700000000
OUR_BODY = b'{"type":"invoice.paid","data":{"id":42}}'
OUR_SIGNATURE = "v1,JoflUGfpYa7LO2G70u3NBtraUvntdgUxzFj8xQf/108="


def provider(secret: str = OUR_SECRET, tolerance: int = 300) -> WebhookProvider:
    return WebhookProvider.from_config({"secret": secret, "tolerance_seconds": tolerance})


def request(body: bytes, msg_id: str, timestamp: int | str, signature: str) -> WebhookRequest:
    headers = {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": signature,
    }
    return WebhookRequest("POST", headers, body)


def independent_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def test_sign_reproduces_the_published_spec_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_published_spec_vector_verifies(clock_at) -> None:
    clock_at(SPEC_TIMESTAMP)
    (event,) = provider(SPEC_SECRET).parse_webhook(
        request(SPEC_BODY, SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE)
    )
    assert event.event_id == SPEC_ID
    assert event.event_type == "webhook.received"  # the body has no "type"
    assert event.payload == {"test": 2432232314}
    assert event.occurred_at == datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)


def test_frozen_vector_matches_hmac_and_the_provider(clock_at) -> None:
    clock_at(OUR_TIMESTAMP)
    computed = independent_signature(OUR_SECRET, OUR_ID, OUR_TIMESTAMP, OUR_BODY)
    assert computed == OUR_SIGNATURE
    assert sign(OUR_SECRET, OUR_ID, OUR_TIMESTAMP, OUR_BODY) == OUR_SIGNATURE
    (event,) = provider().parse_webhook(request(OUR_BODY, OUR_ID, OUR_TIMESTAMP, OUR_SIGNATURE))
    assert event.event_type == "invoice.paid"
    assert event.payload == {"type": "invoice.paid", "data": {"id": 42}}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b, i, t, s: (b + b" ", i, t, s),  # body changed
        lambda b, i, t, s: (b, i + "x", t, s),  # id changed
        lambda b, i, t, s: (b, i, t + 1, s),  # timestamp changed
        lambda b, i, t, s: (b, i, t, s[:-4] + "AAA="),  # signature changed
        lambda b, i, t, s: (b, i, t, s.replace("v1,", "v2,")),  # unknown version
        lambda b, i, t, s: (b, i, t, s.replace("v1,", "")),  # no version
    ],
)
def test_any_tampering_is_refused(tamper, clock_at) -> None:
    clock_at(OUR_TIMESTAMP)
    args = tamper(OUR_BODY, OUR_ID, OUR_TIMESTAMP, OUR_SIGNATURE)
    with pytest.raises(AuthError, match="no valid webhook signature"):
        provider().parse_webhook(request(*args))


def test_a_signature_made_with_another_secret_is_refused() -> None:
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    now = int(time.time())
    sig = independent_signature(other, "m1", now, b"{}")
    with pytest.raises(AuthError):
        provider().parse_webhook(request(b"{}", "m1", now, sig))


def test_rotated_keys_any_one_valid_entry_is_enough() -> None:
    old = "whsec_" + base64.b64encode(b"the-old-secret-before-rotation!!").decode()
    now = int(time.time())
    valid = independent_signature(OUR_SECRET, "m2", now, b"{}")
    stale = independent_signature(old, "m2", now, b"{}")
    for header in (f"{stale} {valid}", f"{valid} {stale}", f"v1a,xyz {valid}"):
        assert provider().parse_webhook(request(b"{}", "m2", now, header))
    with pytest.raises(AuthError):
        provider().parse_webhook(request(b"{}", "m2", now, f"{stale} {stale}"))


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-295, True), (295, True), (-305, False), (305, False)]
)
def test_timestamp_tolerance(offset: int, accepted: bool) -> None:
    ts = int(time.time()) + offset
    req = request(b"{}", "m3", ts, independent_signature(OUR_SECRET, "m3", ts, b"{}"))
    if accepted:
        assert provider().parse_webhook(req)[0].event_id == "m3"
    else:
        with pytest.raises(AuthError, match="tolerance"):
            provider().parse_webhook(req)


@pytest.mark.parametrize("missing", ["Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"])
def test_missing_headers_are_refused(missing: str) -> None:
    now = int(time.time())
    req = request(b"{}", "m4", now, independent_signature(OUR_SECRET, "m4", now, b"{}"))
    headers = {k: v for k, v in req.headers.items() if k != missing}
    with pytest.raises(AuthError, match="missing"):
        provider().parse_webhook(WebhookRequest("POST", headers, b"{}"))


def test_a_non_numeric_timestamp_is_refused() -> None:
    with pytest.raises(AuthError, match="whole seconds") as refused:
        provider().parse_webhook(request(b"{}", "m5", "yesterday", "v1,abc"))
    assert "Standard Webhooks" in refused.value.remediation  # not "check the credentials"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_signed_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    now = int(time.time())
    req = request(body, "m6", now, independent_signature(OUR_SECRET, "m6", now, body))
    with pytest.raises(PermanentError, match="JSON object"):
        provider().parse_webhook(req)


@pytest.mark.parametrize(
    ("msg_id", "body", "problem"),
    [
        ("m" * 201, b'{"type": "order.created"}', "webhook-id must be 1 to 200"),
        ("m7", b'{"type": "%s"}' % (b"t" * 101), "event type must be 1 to 100"),
        ("m8", b'{"type": "a\\u0000b"}', "event type may not contain NUL"),
    ],
)
def test_an_id_or_type_the_inbox_cannot_hold_is_refused_with_a_remedy(
    msg_id: str, body: bytes, problem: str
) -> None:
    now = int(time.time())
    req = request(body, msg_id, now, independent_signature(OUR_SECRET, msg_id, now, body))
    with pytest.raises(PermanentError, match=problem) as refused:
        provider().parse_webhook(req)
    assert "webhook-id of at most 200 characters" in refused.value.remediation


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "secret"),  # no whsec_ prefix
        ({"secret": "whsec_not base64!"}, "secret"),
        ({"secret": "whsec_c2hvcnQ="}, "secret"),  # too little key material
        ({}, "secret"),
        ({"secret": OUR_SECRET, "tolerance_seconds": 0}, "tolerance_seconds"),
        ({"secret": OUR_SECRET, "tolerance_seconds": "soon"}, "tolerance_seconds"),
    ],
)
def test_invalid_config_is_refused_with_the_field(config: dict, field: str) -> None:
    with pytest.raises(ConnectorConfigError) as info:
        WebhookProvider.from_config(config)
    assert field in info.value.field_errors
    secret = config.get("secret")
    if secret:
        assert secret not in str(info.value)  # the error never echoes the secret


def test_schema_marks_the_secret_and_defaults_the_tolerance() -> None:
    fields = {f.key: f for f in WebhookProvider.config_schema()}
    assert fields["secret"].secret and fields["secret"].required
    assert fields["tolerance_seconds"].default == 300
    assert provider(tolerance=300).config["tolerance_seconds"] == 300
    assert WebhookProvider.from_config({"secret": OUR_SECRET}).config["tolerance_seconds"] == 300
    assert WebhookProvider.operations(provider()) == {}
