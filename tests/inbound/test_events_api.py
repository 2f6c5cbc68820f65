"""``GET /api/connectors/{id}/events`` on the live server: newest first, paged, scoped to
the caller's organization."""

from __future__ import annotations

import functools

import httpx2

from jackfield.service.events import EventService


def get(api, path: str, token: str | None, **params) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.get(f"{api.url}{path}", headers=headers, params=params)


def test_the_inbox_lists_newest_first_in_pages(jf, api, admin, webhook_connector, org_token):
    events = EventService(jf.db)
    for n in range(5):
        events.inject(admin, webhook_connector, {"n": n}, event_id=f"ev-{n}", event_type="tick")
    path = f"/api/connectors/{webhook_connector}/events"

    first = get(api, path, org_token, limit=2)
    assert first.status_code == 200
    page = first.json()
    assert [i["event_id"] for i in page["items"]] == ["ev-4", "ev-3"]
    item = page["items"][0]
    assert set(item) >= {
        "id",
        "event_id",
        "event_type",
        "payload",
        "source",
        "received_at",
        "occurred_at",
    }
    assert (item["event_type"], item["payload"], item["source"]) == ("tick", {"n": 4}, "simulator")

    second = get(api, path, org_token, limit=2, cursor=page["next_cursor"]).json()
    third = get(api, path, org_token, limit=2, cursor=second["next_cursor"]).json()
    assert [i["event_id"] for i in second["items"]] == ["ev-2", "ev-1"]
    assert [i["event_id"] for i in third["items"]] == ["ev-0"]
    assert third["next_cursor"] is None


def test_another_organization_gets_404_and_no_credentials_401(
    jf, api, admin, other_admin, webhook_connector, token_for
):
    EventService(jf.db).inject(admin, webhook_connector, {"secret": "plans"})
    path = f"/api/connectors/{webhook_connector}/events"
    outsider = get(api, path, token_for(other_admin.organization_id))
    assert outsider.status_code == 404
    assert outsider.json()["error"]["code"] == "not_found"
    assert "plans" not in outsider.text
    assert get(api, path, None).status_code == 401


def test_a_user_may_read_the_inbox(jf, api, admin, org, webhook_connector, token_for):
    EventService(jf.db).inject(admin, webhook_connector, {"text": "hi"})
    response = get(api, f"/api/connectors/{webhook_connector}/events", token_for(org, "user"))
    assert response.status_code == 200 and len(response.json()["items"]) == 1


def test_bad_paging_parameters_are_422(api, webhook_connector, org_token):
    path = f"/api/connectors/{webhook_connector}/events"
    too_big = str(2**64)  # beyond any row id: a clear error, not the driver's overflow
    # (beyond 4,300 digits Python itself refuses to convert: that was a 500)
    cursors = [{"cursor": value} for value in ("abc", "-4", too_big, "9" * 5000)]
    for params in (*cursors, {"limit": 0}, {"limit": 1000}):
        response = get(api, path, org_token, **params)
        assert response.status_code == 422, params
        assert 0 < len(response.json()["error"]["message"]) < 200
        if "cursor" in params:  # the hint is about paging, not the connector's params
            assert "next_cursor" in response.json()["error"]["remediation"]
            assert response.json()["error"]["code"] == "invalid_request"  # as on every list
        else:  # the hint points at the query, not at a body this request does not have
            assert "query parameters" in response.json()["error"]["remediation"]
            assert "body" not in response.json()["error"]["remediation"]


def test_inject_rules(jf, admin, other_admin, webhook_connector):
    """The simulator's use case: type from the payload, a repeated id is the same event,
    organization scoping and the admin role."""
    import pytest

    from jackfield.kernel import ConnectorConfigError, ConnectorNotFoundError
    from jackfield.kernel.errors import PermissionDeniedError
    from jackfield.service import Principal, Role

    events = EventService(jf.db)
    first = events.inject(admin, webhook_connector, {"type": "order.created"}, event_id="x1")
    again = events.inject(admin, webhook_connector, {"other": True}, event_id="x1")
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert {**first, "duplicate": True} == again and first["event_type"] == "order.created"
    assert events.inject(admin, webhook_connector, {})["event_type"] == "message.received"
    # only a text ``type`` names the event; any other is payload like the rest
    numbered = events.inject(admin, webhook_connector, {"type": 5})
    assert (numbered["event_type"], numbered["payload"]) == ("message.received", {"type": 5})
    with pytest.raises(ConnectorNotFoundError):
        events.inject(other_admin, webhook_connector, {})
    with pytest.raises(PermissionDeniedError):
        events.inject(Principal(admin.organization_id, "u", Role.USER), webhook_connector, {})
    with pytest.raises(ConnectorConfigError):
        events.inject(admin, webhook_connector, ["not", "an", "object"])
    with pytest.raises(ConnectorConfigError):
        events.inject(admin, webhook_connector, {}, event_type="x" * 101)
    with pytest.raises(ConnectorConfigError, match="NUL"):  # PostgreSQL text cannot hold it
        events.inject(admin, webhook_connector, {}, event_type="a\x00b")
    with pytest.raises(ConnectorConfigError, match="deeper than 64"):  # could not be served
        events.inject(
            admin, webhook_connector, functools.reduce(lambda inner, _: {"a": inner}, range(70), {})
        )
    assert len(events.recent(admin)) == 3  # x1 and the two without a text type: nothing else


def test_injecting_one_event_id_at_once_from_many_callers_stores_it_once(
    jf, admin, webhook_connector
):
    """On PostgreSQL two injects could both see the id missing; the second insert then
    raised IntegrityError (a traceback in the CLI) instead of answering ``duplicate``."""
    from concurrent.futures import ThreadPoolExecutor

    events = EventService(jf.db)
    for round_ in range(5):
        with ThreadPoolExecutor(8) as pool:
            inject = functools.partial(
                events.inject, admin, webhook_connector, {"n": round_}, event_id=f"race-{round_}"
            )
            answers = [f.result() for f in [pool.submit(inject) for _ in range(8)]]
        assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 7
        assert len({a["id"] for a in answers}) == 1
