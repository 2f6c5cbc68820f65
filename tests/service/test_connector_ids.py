"""A connector's id in any letter case names it, whichever way it is used: embedded
Python calls the services directly, so they cannot count on a front end to have
normalised it (SQLite and PostgreSQL: the ``jf`` fixture runs both)."""

import pytest

from jackfield import ConnectorNotFoundError
from jackfield.service.events import EventService


def echo(jf, who) -> str:
    created = jf.connectors.create(
        who, name="loop", category="messaging", provider_type="echo", params=[]
    )
    return created["id"]


def test_embedded_calls_find_a_connector_by_its_id_in_upper_case(jf, admin):
    cid = echo(jf, admin)
    upper = cid.upper()

    assert jf.connectors.get(admin, upper)["id"] == cid
    assert jf.connectors.organization_of(upper) == admin.organization_id
    assert jf.connectors.test(admin, upper)["status"] == "connected"
    assert jf.connectors.set_enabled(admin, upper, True)["is_enabled"] is True
    renamed = jf.connectors.update(admin, upper, name="renamed", is_default=True)
    assert (renamed["id"], renamed["name"], renamed["is_default"]) == (cid, "renamed", True)
    jf.open_provider(upper).close()

    events = EventService(jf.db)
    injected = events.inject(admin, upper, {"text": "hi"}, event_id="e-1")
    assert injected["connector_id"] == cid
    assert events.inject(admin, upper, {"text": "hi"}, event_id="e-1")["duplicate"] is True
    assert [e["event_id"] for e in events.list(admin, upper)["items"]] == ["e-1"]

    sent = jf.send(upper, {"text": "out"})
    outbox = jf.runtime.outbox
    assert outbox.get(admin, sent, connector_id=upper)["connector_id"] == cid
    assert [m["envelope_id"] for m in outbox.list(admin, connector_id=upper)[0]] == [sent]
    assert jf.send(upper, {"text": "out"}, envelope_id=sent) == sent  # the same message
    assert outbox.replay_dead(admin, upper) == {"connector_id": cid, "replayed": 0}

    jf.connectors.delete(admin, upper)
    with pytest.raises(ConnectorNotFoundError):
        jf.connectors.get(admin, cid)


@pytest.mark.parametrize("bad", ["not-a-uuid", "a\x00b", "x" * 300, ""])
def test_a_malformed_connector_id_is_simply_not_found(jf, admin, bad):
    echo(jf, admin)
    with pytest.raises(ConnectorNotFoundError):
        jf.connectors.get(admin, bad)
    with pytest.raises(ConnectorNotFoundError):
        jf.connectors.update(admin, bad, is_default=True)
    with pytest.raises(ConnectorNotFoundError):
        EventService(jf.db).list(admin, bad)
    with pytest.raises(ConnectorNotFoundError):
        jf.runtime.outbox.replay_dead(admin, bad)
    with pytest.raises(ConnectorNotFoundError):
        jf.connectors.organization_of(bad)
    with pytest.raises(ConnectorNotFoundError):
        jf.send(bad, {"text": "out"})
    assert jf.runtime.outbox.list(admin, connector_id=bad) == ([], None)
