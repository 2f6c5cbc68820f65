"""Embedded use: ``jf.send`` is a durable write; ``await jf.start()`` delivers, and
``@jf.on`` handlers see the loopback events."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from ulid import ULID

from jackfield.kernel import ConflictError, ConnectorNotFoundError
from jackfield.service.outbox import InvalidMessageError
from jackfield.store.models_outbox import OutboxMessage


def _rows(jf):
    with jf.db.transaction() as s:
        return {r.envelope_id: r for r in s.scalars(select(OutboxMessage))}


async def test_send_commits_before_returning_and_the_runtime_delivers(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    seen: list[str] = []

    @jf.on("message.received")
    async def on_message(event):
        seen.append(event.payload["envelope_id"])

    envelope = await asyncio.to_thread(jf.send, cid, {"text": "hi"})
    assert str(ULID.from_str(envelope)) == envelope
    assert _rows(jf)[envelope].state == "pending"  # durable before any runtime ran
    chosen = str(ULID())
    assert await asyncio.to_thread(jf.send, cid, {"text": "x"}, envelope_id=chosen) == chosen
    assert await asyncio.to_thread(jf.send, cid, {"text": "x"}, envelope_id=chosen) == chosen

    await jf.start()
    try:
        for _ in range(200):
            if sorted(seen) == sorted([envelope, chosen]):
                break
            await asyncio.sleep(0.05)
    finally:
        await jf.stop()
    assert sorted(seen) == sorted([envelope, chosen])  # each once, the repeat not at all
    assert {r.state for r in _rows(jf).values()} == {"delivered"}


def test_send_refuses_what_cannot_be_delivered(jf, tenant, make_connector):
    cid = make_connector(tenant.admin)
    off = make_connector(tenant.admin, enable=False)
    with pytest.raises(InvalidMessageError):
        jf.send(cid, {"text": "x"}, envelope_id="01ARZ3NDEKTSV4RRFFQ69G5FA")  # 25 chars
    with pytest.raises(InvalidMessageError):
        jf.send(cid, "text")  # type: ignore[arg-type]
    with pytest.raises(ConnectorNotFoundError):
        jf.send("00000000-0000-0000-0000-000000000000", {"text": "x"})
    with pytest.raises(ConflictError):
        jf.send(off, {"text": "x"})
    assert _rows(jf) == {}
