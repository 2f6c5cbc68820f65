"""A captured webhook can never be accepted again once the inbox has forgotten its id:
a timestamp may lie at most 5 minutes in the future (a day's tolerance applies to the
past only), and the inbox keeps every event at least a day and those 5 minutes, even
with ``JACKFIELD_INBOX_RETENTION_HOURS=24``."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx2
from sqlalchemy import select, update

from jackfield.runtime.retention import Retention, RetentionConfig
from jackfield.store import utcnow
from jackfield.store.models_inbound import InboxEvent

from .conftest import make_active_connector

DAY = 86_400


def _tolerant_connector(jf, admin, secret) -> str:
    config = {"secret": secret, "tolerance_seconds": DAY}
    return make_active_connector(jf, admin, "webhook", config)


def _post(api, cid, body, headers) -> httpx2.Response:
    return httpx2.post(f"{api.url}/hooks/{cid}", content=body, headers=headers)


def test_a_day_of_tolerance_looks_back_a_day_but_ahead_only_five_minutes(
    jf, api, admin, webhook_secret, sign
):
    cid = _tolerant_connector(jf, admin, webhook_secret)
    body = b'{"type": "payment.captured"}'
    now = int(time.time())
    for offset, status in [(-(DAY - 100), 200), (240, 200), (400, 401), (DAY - 400, 401)]:
        response = _post(api, cid, body, sign(body, timestamp=now + offset))
        # before: a timestamp up to a day ahead was accepted (abs)
        assert response.status_code == status, (offset, response.text)


def test_retention_keeps_a_webhook_id_as_long_as_its_signature_verifies(
    jf, api, admin, webhook_secret, sign, clock_at
):
    cid = _tolerant_connector(jf, admin, webhook_secret)
    body = b'{"type": "payment.captured", "amount": 100}'
    sent = int(time.time()) + 240  # the sender's clock 4 minutes ahead
    captured = sign(body, msg_id="msg_captured", timestamp=sent)
    assert _post(api, cid, body, captured).json() == {"accepted": 1, "duplicates": 0}

    # a day and a minute later (by the row's age and the provider's clock), retention
    # runs with the shortest window the settings accept
    with jf.db.transaction() as s:
        s.execute(update(InboxEvent).values(received_at=utcnow() - timedelta(days=1, minutes=1)))
    retention = Retention(jf.db, jf.runtime.committer, RetentionConfig(inbox_hours=24))
    asyncio.run(retention.prune())
    clock_at(sent - 240 + DAY + 60)  # the timestamp is a day minus 3 minutes old: it verifies

    replayed = _post(api, cid, body, captured)
    # before: the event was pruned at 24 h and the replay stored a second time
    assert replayed.json() == {"accepted": 0, "duplicates": 1}, replayed.text
    with jf.db.transaction() as s:
        ids = list(s.scalars(select(InboxEvent.event_id).where(InboxEvent.connector_id == cid)))
    assert ids == ["msg_captured"]
