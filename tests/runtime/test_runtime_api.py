"""``GET /api/runtime`` and ``POST /api/connectors/{id}/restart`` over real HTTP."""

from __future__ import annotations

import os
import socket

from ulid import ULID

from .conftest import runtime_unit


def _deliver_one(http, connector_id, wait_until):
    envelope = str(ULID())
    sent = http.post(
        f"/api/connectors/{connector_id}/messages",
        json={"envelope_id": envelope, "payload": {"text": "hi"}},
    )
    assert sent.status_code == 202
    wait_until(lambda: http.get(f"/api/outbox/{envelope}").json()["state"] == "delivered")


def test_units_appear_with_their_state_and_only_to_their_organization(
    jf, api, tenant, other_tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin)
    with client(api.url, tenant.user_token) as http:
        assert runtime_unit(http, cid) is None  # an idle outbound connector has no unit yet
        _deliver_one(http, cid, wait_until)
        unit = wait_until(lambda: runtime_unit(http, cid))
        assert unit["liveness"] == "running" and unit["readiness"] == "ready"
        assert unit["restart_count"] == 0 and unit["last_error"] is None
        assert unit["node"] == f"{socket.gethostname()}:{os.getpid()}"
        assert set(unit) >= {
            "connector_id",
            "liveness",
            "readiness",
            "restart_count",
            "last_error",
            "node",
        }
    with client(api.url, other_tenant.user_token) as eve:
        assert eve.get("/api/runtime").json() == {"items": [], "next_cursor": None}
    with client(api.url) as anonymous:
        assert anonymous.get("/api/runtime").status_code == 401

    jf.connectors.set_enabled(tenant.admin, cid, False)
    with client(api.url, tenant.user_token) as http:
        wait_until(lambda: runtime_unit(http, cid)["liveness"] == "stopped")


def test_restart_needs_an_admin_of_the_organization_and_an_enabled_connector(
    jf, api, tenant, other_tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin)
    off = make_connector(tenant.admin, enable=False)
    with client(api.url, tenant.user_token) as user:
        assert user.post(f"/api/connectors/{cid}/restart").status_code == 403
    with client(api.url, other_tenant.admin_token) as eve:
        assert eve.post(f"/api/connectors/{cid}/restart").status_code == 404
    with client(api.url, tenant.admin_token) as http:
        assert http.post("/api/connectors/nope/restart").status_code == 404
        refused = http.post(f"/api/connectors/{off}/restart")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
        named = http.get(f"/api/connectors/{off}").json()["name"]
        assert repr(named) in refused.json()["error"]["message"]  # its name, not its id

        _deliver_one(http, cid, wait_until)
        wait_until(lambda: runtime_unit(http, cid))
        restarted = http.post(f"/api/connectors/{cid}/restart")
        assert restarted.status_code == 200, restarted.text
        unit = wait_until(
            lambda: (
                (u := runtime_unit(http, cid))["restart_count"] == 1
                and u["liveness"] == "running"
                and not u["restart_requested"]
                and u
            )
        )
        assert unit["readiness"] == "ready"
        _deliver_one(http, cid, wait_until)  # and it still delivers
