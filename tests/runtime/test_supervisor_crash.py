"""A crashing unit restarts with growing backoff, then fails, while another connector
keeps delivering; an operator's restart brings it back. A message that crashes its unit
goes to dead on its third crash instead of failing the unit, and its crashes count once
toward the unit's limit: two such messages do not fail it either.

Timings come from the runtime fixtures: restart backoff 0.25 s doubling (±25 %), more
than 5 faults within 60 s -> ``failed``. The poison messages retry after at most
0.01 s * 2**n, so the unit's backoff is what spaces the crashes.
"""

from __future__ import annotations

import itertools
import time

import pytest
from ulid import ULID

from .conftest import runtime_unit


@pytest.fixture
def jf(request, sqlite_url, make_jf):
    """SQLite only: what is under test is the supervisor, not the database (settings
    from an indirect parameter)."""
    return make_jf(sqlite_url, **getattr(request, "param", {}))


ONE_CRASH_KILLS = {"outbox_crash_limit": 1}  # every crash is another message's: a fault each


def _send(http, connector_id, payload):
    body = {"payload": payload, "envelope_id": str(ULID())}
    response = http.post(f"/api/connectors/{connector_id}/messages", json=body)
    assert response.status_code == 202, response.text
    return response.json()["envelope_id"]


def _message(http, envelope_id):
    return http.get(f"/api/outbox/{envelope_id}").json()


def _poison_states(http, envelopes):
    return [_message(http, e) for e in envelopes]


@pytest.mark.parametrize("jf", [ONE_CRASH_KILLS], indirect=True)
def test_a_crashing_unit_backs_off_then_fails_while_another_keeps_delivering(
    api, tenant, make_connector, client, wait_until
):
    crashing = make_connector(tenant.admin, retry={"base_seconds": "0.01"})
    steady = make_connector(tenant.admin)
    with client(api.url, tenant.admin_token) as http:
        # eight messages that each crash the provider: a unit that crashes on everything
        poison = [
            _send(http, crashing, {"text": f"boom {i}", "simulate": "crash"}) for i in range(8)
        ]
        restarted_at: dict[int, float] = {}
        saw_crashed = None
        steady_sent: list[str] = []
        deadline = time.monotonic() + 30
        while True:
            unit = runtime_unit(http, crashing)
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

        # crashed units wait for their restart, visibly, and are not shown ready
        assert saw_crashed is not None and saw_crashed["next_restart_at"] is not None
        assert "RuntimeError" in saw_crashed["last_error"]
        assert saw_crashed["readiness"] == "degraded"

        # five restarts, each after a longer wait than the one before, then the sixth
        # crash in the window marked it failed
        assert unit["restart_count"] == 5
        assert sorted(restarted_at) == [0, 1, 2, 3, 4, 5]
        gaps = [restarted_at[n + 1] - restarted_at[n] for n in range(1, 5)]
        assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
        assert gaps[-1] > 3 * gaps[0], gaps
        assert "simulated crash" in unit["last_error"]
        assert unit["next_restart_at"] is None
        assert unit["readiness"] == "degraded"  # failed: not ready (it does no work)

        # the six crashes were deliveries of six poison messages (with a crash limit of 1
        # per message, each went to dead on its crash), and a failed unit delivers
        # nothing: the rest wait, not dead
        time.sleep(0.5)
        messages = _poison_states(http, poison)
        assert sum(m["attempts"] for m in messages) == 6, messages
        for m in messages:
            if m["attempts"] == 1:
                assert (m["state"], m["error_class"]) == ("dead", "RuntimeError"), m
            else:
                assert (m["attempts"], m["state"]) == (0, "pending"), m
        waiting = [m["envelope_id"] for m in messages if m["state"] != "dead"]
        assert len(waiting) == 2, messages

        # the other connector never noticed
        for envelope in steady_sent:
            wait_until(lambda e=envelope: _message(http, e)["state"] == "delivered")
        other = runtime_unit(http, steady)
        assert other["liveness"] == "running" and other["readiness"] == "ready"
        assert other["restart_count"] == 0 and other["last_error"] is None

        # the operator restarts it: out of failed at once
        restarted = http.post(f"/api/connectors/{crashing}/restart")
        assert restarted.status_code == 200, restarted.text
        assert restarted.json()["liveness"] != "failed"
        # the waiting poison crashes it once each: dead
        for envelope in waiting:
            dead = wait_until(lambda e=envelope: (m := _message(http, e))["state"] == "dead" and m)
            assert dead["attempts"] == 1 and dead["error_class"] == "RuntimeError"
        # two crashes after a restart are not "failed": it comes back and delivers
        healthy = _send(http, crashing, {"text": "healthy again"})
        wait_until(lambda: _message(http, healthy)["state"] == "delivered", timeout=10)
        final = wait_until(
            lambda: (u := runtime_unit(http, crashing))["liveness"] == "running" and u
        )
        assert final["readiness"] == "ready"
        assert final["restart_count"] >= 7  # five automatic, the operator's, at least one more


def test_one_poison_message_goes_to_dead_and_never_holds_its_connector_down(
    api, tenant, make_connector, client, wait_until
):
    """Without the crash limit per message, its crashes marked the unit failed long
    before its retries ran out, and the messages behind it waited for an operator."""
    connector = make_connector(tenant.admin, retry={"base_seconds": "0.01"})
    with client(api.url, tenant.admin_token) as http:
        poison = _send(http, connector, {"text": "boom", "simulate": "crash"})
        behind = [_send(http, connector, {"text": f"after {i}"}) for i in range(10)]
        dead = wait_until(lambda: (m := _message(http, poison))["state"] == "dead" and m)
        assert (dead["attempts"], dead["error_class"]) == (3, "RuntimeError")
        assert dead["last_error"].startswith("crashed the connector 3 times: simulated crash")
        for envelope in behind:
            wait_until(lambda e=envelope: _message(http, e)["state"] == "delivered")
        unit = runtime_unit(http, connector)
        assert unit["liveness"] == "running" and unit["restart_count"] == 3, unit

        # replayed while the provider still crashes on it: one more crash sends it back to
        # dead (it keeps its history in the crash window); the unit stays up
        replayed = http.post(f"/api/outbox/{poison}/replay")
        assert replayed.status_code == 200, replayed.text
        again = wait_until(
            lambda: (m := _message(http, poison))["state"] == "dead" and m["attempts"] == 1 and m
        )
        assert again["last_error"].startswith("crashed the connector 4 times")
        later = _send(http, connector, {"text": "still delivering"})
        wait_until(lambda: _message(http, later)["state"] == "delivered")
        unit = wait_until(
            lambda: (u := runtime_unit(http, connector))["liveness"] == "running" and u
        )
        assert unit["restart_count"] == 4


@pytest.mark.parametrize("jf", [{"supervisor_backoff_max_seconds": 0.5}], indirect=True)
def test_two_poison_messages_go_to_dead_and_do_not_fail_their_connector(
    api, tenant, make_connector, client, wait_until
):
    """Six crashes (three each) used to exceed the unit's limit of five: ``failed``, and
    the good message behind them waited for an operator. A message's crashes are one
    fault of the unit, so it takes six bad messages (or causeless crashes) to fail it."""
    connector = make_connector(tenant.admin, retry={"base_seconds": "0.01"})
    with client(api.url, tenant.admin_token) as http:
        poison = [_send(http, connector, {"text": f"bad {i}", "simulate": "crash"}) for i in (1, 2)]
        for envelope in poison:
            dead = wait_until(
                lambda e=envelope: (m := _message(http, e))["state"] == "dead" and m, timeout=20
            )
            assert (dead["attempts"], dead["error_class"]) == (3, "RuntimeError"), dead
        good = _send(http, connector, {"text": "good"})
        wait_until(lambda: _message(http, good)["state"] == "delivered", timeout=10)
        unit = wait_until(
            lambda: (u := runtime_unit(http, connector))["liveness"] == "running" and u
        )
        assert unit["restart_count"] == 6, unit
        assert unit["readiness"] == "ready"  # the delivery that worked says so again
