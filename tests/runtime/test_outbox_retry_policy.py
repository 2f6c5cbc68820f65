"""Retry delays of messages and restart delays of units (pure arithmetic, no I/O)."""

from __future__ import annotations

import pytest

from jackfield.integration import parse_retry_after
from jackfield.runtime.retry import MAX_DELAY_SECONDS, Backoff, RetryPolicy


def test_message_retries_use_full_jitter_under_a_growing_cap():
    policy = RetryPolicy(base_seconds=1.0, max_seconds=300.0, max_attempts=10)
    for attempt, cap in [(1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (12, 300.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # jitter spreads over the whole range
    assert not policy.exhausted(9) and policy.exhausted(10)


def test_retry_after_is_a_floor_never_shortened():
    policy = RetryPolicy(base_seconds=1.0, max_seconds=300.0)
    assert all(policy.delay(1, retry_after=30.0) >= 30.0 for _ in range(50))
    assert policy.delay(1, retry_after=400.0) == 400.0  # even beyond the cap


def test_no_wait_exceeds_a_day():
    """A Retry-After holding a timestamp (1765000000000: epoch milliseconds) would
    otherwise overflow the date of the next attempt and stall the delivery worker."""
    policy = RetryPolicy()
    assert policy.delay(1, retry_after=1765000000000.0) == MAX_DELAY_SECONDS == 86400.0
    assert policy.delay(1, retry_after=float("inf")) == MAX_DELAY_SECONDS
    assert RetryPolicy(max_seconds=1e300, base_seconds=1e300).delay(3) <= MAX_DELAY_SECONDS


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("-3", 0.0), ("inf", None), ("nan", None), ("1e400", None), ("soon", None)],
)
def test_retry_after_headers_that_are_no_number_of_seconds_are_ignored(header, seconds):
    assert parse_retry_after(header) == seconds


def test_connector_params_override_the_policy_and_bad_values_are_ignored():
    base = RetryPolicy()
    tuned = base.with_overrides({"retry": {"max_attempts": "3", "base_seconds": "0.5"}})
    assert (tuned.max_attempts, tuned.base_seconds, tuned.max_seconds) == (3, 0.5, 300.0)
    odd = base.with_overrides({"retry": {"max_attempts": "many", "max_seconds": "-1"}})
    assert odd == base
    assert base.with_overrides({"retry": {"max_seconds": "1e400", "base_seconds": "inf"}}) == base
    assert base.with_overrides({"retry": "nope"}) == base


def test_unit_restarts_back_off_exponentially_within_a_narrow_band_up_to_the_cap():
    backoff = Backoff(base_seconds=1.0, max_seconds=60.0)
    for restarts, nominal in [(0, 1.0), (1, 2.0), (3, 8.0), (5, 32.0)]:
        delays = [backoff.delay(restarts) for _ in range(100)]
        assert all(0.75 * nominal <= d <= 1.25 * nominal for d in delays)
    assert all(backoff.delay(10) <= 60.0 for _ in range(100))
