"""Fixtures of the inbound tests: the webhook provider registered, an active webhook
connector, a signed request builder (computed here with hmac, independently of the
provider's own ``sign``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from jackfield import connector_registry
from jackfield.connectors.webhook import WebhookProvider
from jackfield.service import Principal

if not connector_registry.is_registered("http", "webhook"):
    connector_registry.register(WebhookProvider)

SECRET = "whsec_" + base64.b64encode(b"jackfield-inbound-tests-key-0001").decode()


def signature(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signed_headers(
    body: bytes,
    *,
    secret: str = SECRET,
    msg_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def make_active_connector(
    jf: Any, who: Principal, provider_type: str, config: dict[str, Any], category: str = "http"
) -> str:
    """Create, test and activate a connector (the path an admin takes)."""
    created = jf.connectors.create(
        who,
        name=f"{provider_type}-{uuid.uuid4().hex[:6]}",
        category=category,
        provider_type=provider_type,
        config=config,
    )
    assert jf.connectors.test(who, created["id"])["success"]
    jf.connectors.set_enabled(who, created["id"], True)
    return str(created["id"])


@pytest.fixture
def webhook_connector(jf: Any, admin: Principal) -> str:
    return make_active_connector(jf, admin, "webhook", {"secret": SECRET})


@pytest.fixture
def webhook_secret() -> str:
    return SECRET


@pytest.fixture
def sign() -> Callable[..., dict[str, str]]:
    """``sign(body, secret=..., msg_id=..., timestamp=...)`` -> Standard Webhooks headers."""
    return signed_headers


@pytest.fixture
def token_for(jf: Any) -> Callable[..., str]:
    """``token_for(org_id, role="admin")`` -> an API token of a new user of that org."""

    def make(org_id: str, role: str = "admin") -> str:
        name = next(o["name"] for o in jf.accounts.list_orgs() if o["id"] == org_id)
        email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        _, token = jf.accounts.create_user(email, name, role, with_token=True)
        assert token
        return str(token)

    return make


@pytest.fixture
def org_token(org: str, token_for: Callable[..., str]) -> str:
    return token_for(org)


@pytest.fixture
def as_json() -> Callable[[dict[str, Any]], bytes]:
    return lambda payload: json.dumps(payload).encode()


@pytest.fixture
def clock_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``clock_at(ts)``: the ``webhook`` provider's clock reads ``ts`` (for the fixed
    vectors' old timestamps; a tolerance is at most a day)."""
    from types import SimpleNamespace

    from jackfield.connectors import webhook

    def freeze(timestamp: int) -> None:
        monkeypatch.setattr(webhook, "time", SimpleNamespace(time=lambda: float(timestamp)))

    return freeze
