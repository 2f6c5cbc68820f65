"""A connector's buffer holds what its workers deliver in a quarter of the lease: a slow
connector keeps one claim's worth (its leases would run out in a longer queue), a fast
one up to the node's in-flight limit."""

from __future__ import annotations

from jackfield.runtime.outbox_pace import Pace


def test_an_unmeasured_connector_gets_one_claims_worth():
    pace = Pace(floor=256, ceiling=2048, lease_seconds=60)
    assert pace.room("c") == 256


def test_a_fast_connector_may_buffer_up_to_the_node_limit_and_a_slow_one_stays_small():
    pace = Pace(floor=256, ceiling=2048, lease_seconds=60)
    pace.note("fast", messages=256, seconds=0.01, concurrency=16)
    pace.note("slow", messages=10, seconds=5.0, concurrency=1)  # 2 messages a second
    assert pace.room("fast") == 2048
    assert pace.room("slow") == 256


def test_room_follows_the_measured_rate_between_the_bounds():
    pace = Pace(floor=10, ceiling=10_000, lease_seconds=60)  # a 15 s budget
    pace.note("c", messages=100, seconds=1.0, concurrency=4)  # 10 ms each, 4 side by side
    assert pace.room("c") == 6000
    pace.note("c", messages=100, seconds=10.0, concurrency=4)  # it slowed down tenfold
    assert 10 < pace.room("c") < 6000  # the average moves, not jumps
    pace.forget("c")
    assert pace.room("c") == 10


def test_a_run_without_deliveries_changes_nothing():
    pace = Pace(floor=10, ceiling=100, lease_seconds=60)
    pace.note("c", messages=0, seconds=3.0, concurrency=1)
    assert pace.room("c") == 10
