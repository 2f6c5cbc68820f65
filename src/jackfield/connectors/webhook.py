"""webhook: a generic inbound webhook verified the Standard Webhooks way.

Spec: https://www.standardwebhooks.com/. The sender signs
``"{webhook-id}.{webhook-timestamp}.{raw body}"`` with HMAC-SHA256, keyed by the
base64-decoded part of the shared secret after ``whsec_``, and sends
``webhook-signature: v1,<base64 signature>`` (several space-separated entries while it
rotates keys; any one valid entry is enough). The timestamp may be at most
``tolerance_seconds`` old, and at most the lesser of that and 5 minutes
(``MAX_CLOCK_SKEW_SECONDS``) in the future -- a sender's clock running ahead -- which
bounds replays; the id deduplicates redeliveries. The future side is capped so that a
request stops verifying before the inbox forgets its id (``MAX_CLOCK_SKEW_SECONDS``).

Decisions where the spec leaves room: the body must be a JSON object (a signed body
that is not is refused with 400 and nothing is stored: handlers can rely on a dict);
``event_type`` is the body's ``type`` field (``webhook.received`` when absent);
``occurred_at`` is the signed timestamp. Bodies the standard library reads are
accepted (NaN is stored as null, long integers exactly), except what could not be
served back (``kernel.payloads``: nesting deeper than its limit, unpaired surrogates);
the id and type may not hold NUL characters (PostgreSQL text cannot).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

from jackfield.kernel import (
    AuthError,
    Capability,
    ConfigField,
    ConnectionTestResult,
    ConnectorConfigError,
    ConnectorNotSupportedError,
    FieldType,
    HttpProvider,
    HttpRequest,
    InboundEvent,
    PermanentError,
    Tier,
    WebhookRequest,
    WebhookSource,
)
from jackfield.kernel.inbound import (
    MAX_CLOCK_SKEW_SECONDS,
    MAX_EVENT_ID,
    MAX_EVENT_TYPE,
    MAX_REPLAY_WINDOW_SECONDS,
    text_problem,
)
from jackfield.kernel.payloads import TOO_DEEP, PayloadError, check_depth, check_unicode

SECRET_PREFIX = "whsec_"
DEFAULT_EVENT_TYPE = "webhook.received"
DEFAULT_TOLERANCE = 300


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_<base64>`` secret; ``ValueError`` if malformed."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"the secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the part after {SECRET_PREFIX!r} must be base64") from None
    if len(key) < 16:
        raise ValueError("the secret must hold at least 16 bytes of key material")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value a sender would send (``v1,<base64>``)."""
    keyed = _keyed(decode_secret(secret))
    return "v1," + _expected_with(keyed, msg_id, str(timestamp), body).decode()


def _keyed(key: bytes) -> Any:
    """An HMAC-SHA256 already keyed with ``key``, to ``copy()`` per message: cheaper
    than keying one per message (OpenSSL 3 looks the digest up on every new HMAC)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _expected_with(keyed: Any, msg_id: str, timestamp: str, body: bytes) -> bytes:
    """The base64 signature (as bytes) of a request: HMAC over ``{id}.{timestamp}.{body}``."""
    mac = keyed.copy()
    mac.update(f"{msg_id}.{timestamp}.".encode())
    mac.update(body)  # the raw bytes as received, not copied
    return base64.b64encode(mac.digest())


class WebhookProvider(HttpProvider, WebhookSource):
    """Receives signed webhooks at ``/hooks/{connector_id}``; sends nothing."""

    provider_type: ClassVar[str] = "webhook"
    display_name: ClassVar[str] = "Webhook (Standard Webhooks)"
    tier: ClassVar[Tier] = Tier.SUPPORTED
    capabilities: ClassVar[frozenset[str]] = frozenset({Capability.WEBHOOK})
    sends: ClassVar[bool] = False
    verify_inline: ClassVar[bool] = True
    """Verification is bounded CPU work (an HMAC and a JSON parse, no I/O): the ingress
    may run it on the event loop for small bodies instead of paying a thread hop."""
    events_checked: ClassVar[bool] = True
    """``parse_webhook`` checks the id and type itself, and the body (a JSON object, its
    depth and Unicode, at most 1 MiB) bounds the payload: the ingress need not."""

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [
            ConfigField(
                "secret",
                "Signing secret",
                required=True,
                secret=True,
                help="whsec_ followed by base64, shared with the sender.",
            ),
            ConfigField(
                "tolerance_seconds",
                "Timestamp tolerance (s)",
                type=FieldType.INTEGER,
                default=DEFAULT_TOLERANCE,
                help="Refuse webhooks whose timestamp is older than this (at most a "
                "day), or further ahead than this or 5 minutes, whichever is less.",
            ),
        ]

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        valid = super().validate_config(config)
        errors: dict[str, str] = {}
        try:
            decode_secret(valid.get("secret") or "")
        except ValueError as exc:
            errors["secret"] = str(exc)
        tolerance = valid.get("tolerance_seconds", DEFAULT_TOLERANCE)
        if tolerance <= 0:
            errors["tolerance_seconds"] = "must be a positive number of seconds"
        elif tolerance > MAX_REPLAY_WINDOW_SECONDS:
            # the inbox remembers webhook ids for a day at least: beyond, replays get in
            errors["tolerance_seconds"] = (
                f"must be at most {MAX_REPLAY_WINDOW_SECONDS} seconds (a day): an older "
                "request could be replayed once its id has left the inbox"
            )
        if errors:
            raise ConnectorConfigError.for_fields(errors)
        return valid

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._key = decode_secret(config["secret"])
        self._keyed = _keyed(self._key)
        self._tolerance = int(config.get("tolerance_seconds") or DEFAULT_TOLERANCE)
        self._ahead = min(self._tolerance, MAX_CLOCK_SKEW_SECONDS)  # a sender's clock skew
        self._last_sent = (0, datetime.fromtimestamp(0, UTC))  # (seconds, as datetime)

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(
            True,
            "the signing secret is valid; senders post to this connector's webhook URL"
            " (its page, or 'jackfield connectors show ID')",
        )

    # -- outbound: none ------------------------------------------------------------
    def operations(self) -> dict[str, Any]:
        return {}

    def request(self, request: HttpRequest) -> Any:
        raise ConnectorNotSupportedError("a webhook connector only receives", operation="request")

    # -- inbound -------------------------------------------------------------------
    def parse_webhook(self, request: WebhookRequest) -> list[InboundEvent]:
        headers = request.headers
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signatures = headers.get("webhook-signature", "")
        if not (msg_id and timestamp and signatures):  # names in another case?
            headers = {k.lower(): v for k, v in headers.items()}
            msg_id = headers.get("webhook-id", "")
            timestamp = headers.get("webhook-timestamp", "")
            signatures = headers.get("webhook-signature", "")
        if not (msg_id and timestamp and signatures):
            raise AuthError(
                "missing webhook-id, webhook-timestamp or webhook-signature header",
                remediation="Sign requests the Standard Webhooks way.",
            )
        sent_at = self._check_timestamp(timestamp)
        expected = _expected_with(self._keyed, msg_id, timestamp, request.body)
        for entry in signatures.split():
            version, _, sig = entry.partition(",")
            if version == "v1" and hmac.compare_digest(sig.encode(), expected):
                break
        else:
            raise AuthError(
                "no valid webhook signature",
                remediation="Check that the sender uses this connector's current secret.",
            )
        payload = _json_object(request.body)
        event_type = payload.get("type")
        if not isinstance(event_type, str) or not event_type.strip():
            event_type = DEFAULT_EVENT_TYPE
        problem = text_problem("webhook-id", msg_id, MAX_EVENT_ID) or text_problem(
            "the event type", event_type, MAX_EVENT_TYPE
        )
        if problem is not None:
            raise PermanentError(
                problem,
                remediation=f"Send a webhook-id of at most {MAX_EVENT_ID} characters and a"
                f" text type of at most {MAX_EVENT_TYPE}, without NUL characters.",
            )
        return [InboundEvent(msg_id, event_type, payload, occurred_at=sent_at)]

    def _check_timestamp(self, value: str) -> datetime:
        # ASCII digits only: int() also reads "1_700", " 1700", "+1700" and other
        # scripts' digits, each a different signed text for the same moment
        if not (value.isascii() and value.isdigit()):
            raise AuthError(
                "webhook-timestamp must be whole seconds since the epoch (ASCII digits)",
                remediation="Sign requests the Standard Webhooks way.",
            )
        now = time.time()
        # over 12 digits is past the year 33000 (and int()/float() would raise on it)
        sent = int(value) if len(value) <= 12 else sys.maxsize
        if not now - self._tolerance <= sent <= now + self._ahead:
            raise AuthError(
                "webhook timestamp outside the tolerance (or over 5 minutes ahead)",
                remediation="Check the sender's clock; replayed webhooks are refused.",
            )
        last = self._last_sent  # busy senders send many webhooks within one second
        if last[0] != sent:
            last = self._last_sent = (sent, datetime.fromtimestamp(sent, UTC))
        return last[1]


_LONG_NUMBER = re.compile(rb"[0-9]{19}")
"""orjson reads integers beyond 64 bits as (rounded) floats; json keeps them exact."""


def _json_object(body: bytes) -> dict[str, Any]:
    payload, checked = _parse(body)
    if not isinstance(payload, dict):
        raise _refused("the webhook body must be a JSON object")
    try:
        check_depth(payload, body)
        if not checked:
            check_unicode(payload)
    except PayloadError as exc:
        raise _refused(f"the webhook body cannot be stored: {exc}") from None
    return payload


def _parse(body: bytes) -> tuple[Any, bool]:
    """The body's JSON value (``None`` if it is not JSON), and whether the parser
    already made sure its text is valid Unicode (orjson does; json reads lone
    surrogates)."""
    try:
        if _LONG_NUMBER.search(body) is None:
            # several times faster than json on small bodies, and the same result
            return orjson.loads(body), True
    except orjson.JSONDecodeError:
        pass  # what orjson refuses json may accept (NaN, UTF-16, lone surrogates)
    try:
        return json.loads(body), False
    except (UnicodeDecodeError, ValueError):
        return None, True
    except RecursionError:
        raise _refused(f"the webhook body cannot be stored: {TOO_DEEP}") from None


def _refused(message: str) -> PermanentError:
    return PermanentError(
        message, remediation="Send the event as a JSON object (Standard Webhooks payload)."
    )
