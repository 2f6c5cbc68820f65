"""The provider parses bodies with orjson and falls back to the standard library: what
``json`` accepted before is still accepted (NaN, integers beyond 64 bits)."""

from __future__ import annotations

import math
import time

import pytest

from jackfield.connectors.webhook import WebhookProvider, sign
from jackfield.kernel import AuthError, WebhookRequest

SECRET = "whsec_amFja2ZpZWxkLWluYm91bmQtdGVzdHMta2V5LTAwMDE="


def _request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    now = int(time.time())
    signed = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(SECRET, "msg_1", now, body),
    }
    return WebhookRequest("POST", headers if headers is not None else signed, body)


@pytest.mark.parametrize(
    ("body", "check"),
    [
        (b'{"n": NaN}', lambda p: math.isnan(p["n"])),
        (
            b'{"n": 123456789012345678901234567890}',
            lambda p: p["n"] == 123456789012345678901234567890,
        ),
        (b'{"type": "a.b", "x": [1, 2]}', lambda p: p == {"type": "a.b", "x": [1, 2]}),
    ],
)
def test_bodies_json_accepts_are_accepted(body: bytes, check) -> None:
    provider = WebhookProvider.from_config({"secret": SECRET})
    (event,) = provider.parse_webhook(_request(body))
    assert check(event.payload)


def test_the_same_second_gives_equal_occurred_at_and_a_new_second_a_new_one(clock_at) -> None:
    clock_at(1700000000)
    provider = WebhookProvider.from_config({"secret": SECRET})
    stamps = []
    for ts in (1700000000, 1700000000, 1700000001):
        body = b"{}"
        headers = {
            "webhook-id": "m",
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(SECRET, "m", ts, body),
        }
        (event,) = provider.parse_webhook(WebhookRequest("POST", headers, body))
        stamps.append(int(event.occurred_at.timestamp()))
    assert stamps == [1700000000, 1700000000, 1700000001]


def test_several_entries_any_valid_one_and_none_valid() -> None:
    provider = WebhookProvider.from_config({"secret": SECRET})
    good = _request(b"{}")
    sig = good.headers["webhook-signature"]
    several = {**good.headers, "webhook-signature": f"v2,abc v1,bad {sig}"}
    assert provider.parse_webhook(WebhookRequest("POST", several, b"{}"))
    none_valid = {**good.headers, "webhook-signature": "v1,bad v1a," + sig.split(",")[1]}
    with pytest.raises(AuthError):
        provider.parse_webhook(WebhookRequest("POST", none_valid, b"{}"))
