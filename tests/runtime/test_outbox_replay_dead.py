"""Replaying every dead letter of a connector at once: after an outage's cause is fixed,
its messages go back to pending with their envelope ids and are delivered; nothing else
moves. Both databases."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from jackfield.kernel.errors import ConnectorNotFoundError, PermissionDeniedError
from jackfield.runtime.outbox_store import Ack, OutboxStore
from jackfield.service import Principal, Role
from jackfield.store.models import AuditEvent
from jackfield.store.models_outbox import OutboxMessage


def _states(jf, connector_id):
    with jf.db.transaction() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.connector_id == connector_id))
        return {r.envelope_id: (r.state, r.attempts, r.error_class) for r in rows}


def _die(jf, envelopes):
    """Mark ``envelopes`` dead as a worker does when an outage outlasts their retries."""
    store = OutboxStore(jf.db)
    claimed = [c for c in store.claim(100, lease_seconds=30) if c.envelope_id in envelopes]
    assert len(claimed) == len(envelopes)
    acks = [Ack(c, "dead", error_class="ConnectionFailedError", last_error="down") for c in claimed]
    assert len(store.ack(acks).applied) == len(envelopes)


async def test_every_dead_letter_of_the_connector_is_sent_again(
    jf, tenant, other_tenant, make_connector
):
    cid = make_connector(tenant.admin)
    bystander = make_connector(tenant.admin)
    theirs = make_connector(other_tenant.admin)
    dead = [jf.send(cid, {"text": f"during the outage {i}"}) for i in range(3)]
    their_dead = jf.send(theirs, {"text": "theirs"})
    other_dead = jf.send(bystander, {"text": "another connector's"})
    _die(jf, {*dead, their_dead, other_dead})
    waiting = jf.send(cid, {"text": "queued after"})  # pending: not a dead letter

    result = jf.runtime.outbox.replay_dead(tenant.admin, cid)

    assert result == {"connector_id": cid, "replayed": 3}
    states = _states(jf, cid)
    assert {e: states[e] for e in dead} == {e: ("pending", 0, None) for e in dead}
    assert states[waiting] == ("pending", 0, None)
    assert _states(jf, bystander)[other_dead][0] == "dead"
    assert _states(jf, theirs)[their_dead][0] == "dead"
    with jf.db.transaction() as s:
        [audit] = s.scalars(select(AuditEvent).where(AuditEvent.action == "outbox.replay_dead"))
        assert (audit.target_id, audit.details) == (cid, {"replayed": 3})
    assert jf.runtime.outbox.replay_dead(tenant.admin, cid)["replayed"] == 0  # none left

    await jf.start()  # the cause is fixed: the runtime delivers them, same envelope ids
    try:
        for _ in range(200):
            if {s[0] for s in _states(jf, cid).values()} == {"delivered"}:
                break
            await asyncio.sleep(0.05)
    finally:
        await jf.stop()
    assert {e: s[:2] for e, s in _states(jf, cid).items()} == {
        e: ("delivered", 1) for e in [*dead, waiting]
    }


def test_only_an_admin_of_the_connectors_organization_may_replay(
    jf, tenant, other_tenant, make_connector
):
    cid = make_connector(tenant.admin)
    envelope = jf.send(cid, {"text": "x"})
    _die(jf, {envelope})
    user = Principal(tenant.org_id, "user@example.com", Role.USER)
    with pytest.raises(PermissionDeniedError):
        jf.runtime.outbox.replay_dead(user, cid)
    with pytest.raises(ConnectorNotFoundError):  # another organization's: as if missing
        jf.runtime.outbox.replay_dead(other_tenant.admin, cid)
    assert _states(jf, cid)[envelope][0] == "dead"


def test_over_http_an_admin_replays_and_a_user_may_not(
    api, jf, tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin)
    doomed = [jf.send(cid, {"text": f"m{i}", "simulate": "permanent"}) for i in range(2)]
    path = f"/api/connectors/{cid}/outbox/replay-dead"
    with client(api.url, tenant.admin_token) as http:

        def dead():
            return all(http.get(f"/api/outbox/{e}").json()["state"] == "dead" for e in doomed)

        wait_until(dead)
        with client(api.url, tenant.user_token) as user:
            assert user.post(path).status_code == 403
        response = http.post(path)
        assert response.status_code == 200, response.text
        assert response.json() == {"connector_id": cid, "replayed": 2}
        assert http.post("/api/connectors/no-such-connector/outbox/replay-dead").status_code == 404
