"""A crashing unit restarts with growing backoff, then fails, while another connector
keeps delivering; an operator's restart brings it back.

Timings come from the runtime fixtures: restart backoff 0.25 s doubling (±25 %), more
than 5 crashes within 60 s -> ``failed``. The poison message retries after at most
0.01 s * 2**n, so the unit's backoff is what spaces the crashes.
"""

from __future__ import annotations

import itertools
import time

import pytest
from ulid import ULID


@pytest.fixture
def jf(sqlite_url, make_jf):
    """SQLite only: what is under test is the supervisor, not the database."""
    return make_jf(sqlite_url)


def _send(http, connector_id, payload):
    body = {"payload": payload, "envelope_id": str(ULID())}
    response = http.post(f"/api/connectors/{connector_id}/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()["envelope_id"]


def _unit(http, connector_id):
    items = http.get("/api/runtime").json()["items"]
    return next((u for u in items if u["connector_id"] == connector_id), None)


def _message(http, envelope_id):
    return http.get(f"/api/outbox/{envelope_id}").json()


def test_a_crashing_unit_backs_off_then_fails_while_another_keeps_delivering(
    api, tenant, make_connector, client, wait_until
):
    crashing = make_connector(tenant.admin, retry={"max_attempts": "7", "base_seconds": "0.01"})
    steady = make_connector(tenant.admin)
    with client(api.url, tenant.admin_token) as http:
        poison = _send(http, crashing, {"text": "boom", "simulate": "crash"})
        restarted_at: dict[int, float] = {}
        saw_crashed = None
        steady_sent: list[str] = []
        deadline = time.monotonic() + 30
        while True:
            unit = _unit(http, crashing)
            now = time.monotonic()
            if unit is not None:
                restarted_at.setdefault(unit["restart_count"], now)
                if unit["liveness"] == "crashed" and saw_crashed is None:
                    saw_crashed = unit
                if unit["liveness"] == "failed":
                    break
            if len(steady_sent) < 30:
                steady_sent.append(_send(http, steady, {"text": f"steady {len(steady_sent)}"}))
            assert now < deadline, f"the unit did not fail in time: {unit}"
            time.sleep(0.01)

        # crashed units wait for their restart, visibly
        assert saw_crashed is not None and saw_crashed["next_restart_at"] is not None
        assert "RuntimeError" in saw_crashed["last_error"]

        # five restarts, each after a longer wait than the one before, then the sixth
        # crash in the window marked it failed
        assert unit["restart_count"] == 5
        assert sorted(restarted_at) == [0, 1, 2, 3, 4, 5]
        gaps = [restarted_at[n + 1] - restarted_at[n] for n in range(1, 5)]
        assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
        assert gaps[-1] > 3 * gaps[0], gaps
        assert "simulated crash" in unit["last_error"]
        assert unit["next_restart_at"] is None

        # a failed unit delivers nothing: its message waits, it is not dead
        time.sleep(0.5)
        waiting = _message(http, poison)
        assert (waiting["state"], waiting["attempts"]) == ("retrying", 6), waiting

        # the other connector never noticed
        for envelope in steady_sent:
            wait_until(lambda e=envelope: _message(http, e)["state"] == "delivered")
        other = _unit(http, steady)
        assert other["liveness"] == "running" and other["readiness"] == "ready"
        assert other["restart_count"] == 0 and other["last_error"] is None

        # the operator restarts it: out of failed at once
        restarted = http.post(f"/api/connectors/{crashing}/restart")
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["liveness"] != "failed"
        # the poison message crashes it once more, on its 7th and last attempt: dead
        dead = wait_until(lambda: (m := _message(http, poison))["state"] == "dead" and m)
        assert dead["attempts"] == 7 and dead["error_class"] == "RuntimeError"
        assert dead["last_error"].startswith("gave up after 7 attempts")
        # one crash after a restart is not "failed": it comes back and delivers again
        healthy = _send(http, crashing, {"text": "healthy again"})
        wait_until(lambda: _message(http, healthy)["state"] == "delivered", timeout=10)
        final = wait_until(lambda: (u := _unit(http, crashing))["liveness"] == "running" and u)
        assert final["readiness"] == "ready"
        assert final["restart_count"] >= 7  # five automatic, the operator's, one more
