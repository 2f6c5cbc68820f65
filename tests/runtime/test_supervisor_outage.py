"""An outage of the system a polling or subscription unit reads from is not a crash.

While ``poll()`` or ``subscribe()`` raises a ``ConnectorError`` (the system is down,
throttles, refuses the credentials, ...), the unit keeps ``running``: its readiness and
``last_error`` say what is wrong, and it tries again on its own with backoff, however
many times. Once the system answers again it is ``ready``, with no stale error, and no
operator had to restart anything. Only what a provider should never raise (its bugs)
counts as a crash.

More than two crashes within the window mark a unit ``failed`` here, so an outage that
still counted as crashes would leave the unit ``failed`` after its third failure.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

import pytest
from ulid import ULID

from jackfield import ConfigField, connector_registry
from jackfield.kernel import (
    AuthError,
    ConnectionFailedError,
    ConnectorConfigError,
    ConnectorError,
    InboundEvent,
    MessagingProvider,
    OutboundMessage,
    PermanentError,
    PollingSource,
    RateLimitedError,
    ReceivedEvent,
    SentMessage,
    SubscriptionSource,
    TransientError,
)

from .conftest import inbox_event_ids, runtime_unit

ERRORS: dict[str, type[ConnectorError]] = {
    "connection": ConnectionFailedError,
    "transient": TransientError,
    "rate_limited": RateLimitedError,
    "auth": AuthError,
    "permanent": PermanentError,
    "config": ConnectorConfigError,
}


class Upstream:
    """The external system: down for the keys in ``DOWN``; counts the failed calls."""

    DOWN: ClassVar[set[str]] = set()
    FAILURES: ClassVar[dict[str, int]] = {}

    @classmethod
    def check(cls, key: str, error: str) -> None:
        if key in cls.DOWN:
            cls.FAILURES[key] = cls.FAILURES.get(key, 0) + 1
            raise ERRORS[error]("upstream.invalid is having an outage")


class OutageFeed(MessagingProvider, PollingSource):
    """Polls three events from a system that may be down."""

    provider_type: ClassVar[str] = "outage_feed_test"
    display_name: ClassVar[str] = "Outage feed (tests)"
    poll_interval_seconds = 0.05

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [ConfigField("key", "Key"), ConfigField("error", "Error", default="connection")]

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
        Upstream.check(self.config["key"], self.config["error"])
        n = int(cursor or 0)
        if n >= 3:
            return [], cursor
        return [InboundEvent(f"feed-{n}", "tick", {"n": n})], str(n + 1)

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="f")


class OutageStream(MessagingProvider, SubscriptionSource):
    """Subscribes to a broker that may be down; once up, it delivers two events."""

    provider_type: ClassVar[str] = "outage_stream_test"
    display_name: ClassVar[str] = "Outage stream (tests)"

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [ConfigField("key", "Key"), ConfigField("error", "Error", default="connection")]

    async def subscribe(self) -> AsyncIterator[ReceivedEvent]:
        Upstream.check(self.config["key"], self.config["error"])
        for n in range(2):

            async def ack() -> None:
                return None

            yield ReceivedEvent(InboundEvent(f"stream-{n}", "tick", {"n": n}), ack)
        await asyncio.sleep(3600)  # connected, nothing more to say

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="s")


class OutageOpenFeed(OutageFeed):
    """Connects to its system when it opens, then polls like ``OutageFeed`` (up)."""

    provider_type: ClassVar[str] = "outage_open_feed_test"
    display_name: ClassVar[str] = "Outage open feed (tests)"

    def open(self) -> None:
        Upstream.check(self.config["key"], self.config["error"])

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
        n = int(cursor or 0)
        if n >= 3:
            return [], cursor
        return [InboundEvent(f"feed-{n}", "tick", {"n": n})], str(n + 1)


class OutageOpenSender(MessagingProvider):
    """Only sends; connects to its system when it opens."""

    provider_type: ClassVar[str] = "outage_open_sender_test"
    display_name: ClassVar[str] = "Outage open sender (tests)"

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [ConfigField("key", "Key"), ConfigField("error", "Error", default="connection")]

    def open(self) -> None:
        Upstream.check(self.config["key"], self.config["error"])

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="o")


for _cls in (OutageFeed, OutageStream, OutageOpenFeed, OutageOpenSender):
    if not connector_registry.is_registered("messaging", _cls.provider_type):
        connector_registry.register(_cls)


@pytest.fixture
def jf(database_url, make_jf):
    return make_jf(database_url, supervisor_crash_limit=2, supervisor_backoff_max_seconds=1.0)


def _outage(make_connector, tenant, provider_type, error):
    key = uuid.uuid4().hex
    Upstream.DOWN.add(key)
    return key, make_connector(tenant.admin, provider_type, key=key, error=error)


@pytest.mark.parametrize("provider_type", ["outage_feed_test", "outage_stream_test"])
@pytest.mark.parametrize(
    ("error", "readiness"),
    [
        ("connection", "unreachable"),
        ("transient", "degraded"),
        ("rate_limited", "degraded"),
        ("auth", "auth_failed"),
    ],
)
def test_an_outage_is_waited_out_and_the_unit_is_ready_again_by_itself(
    api, tenant, make_connector, client, wait_until, provider_type, error, readiness
):
    """Before, each failed poll or subscribe was a crash: the third marked the unit
    ``failed``, and it stayed down after the system was back until an operator
    restarted it."""
    key, cid = _outage(make_connector, tenant, provider_type, error)
    with client(api.url, tenant.user_token) as http:
        # many more failures than the crash limit: still running, saying why not ready
        wait_until(lambda: Upstream.FAILURES.get(key, 0) >= 5, timeout=20)
        unit = runtime_unit(http, cid)
        assert (unit["liveness"], unit["readiness"]) == ("running", readiness), unit
        assert unit["restart_count"] == 0 and unit["next_restart_at"] is None
        assert unit["last_error"].startswith(f"{ERRORS[error].__name__}: "), unit
        assert "upstream.invalid is having an outage" in unit["last_error"]

        Upstream.DOWN.discard(key)  # the system is back
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "ready" and u
        )
        assert unit["liveness"] == "running" and unit["restart_count"] == 0
        assert unit["last_error"] is None  # not a stale error beside "ready"
        expected = ["feed-0", "feed-1", "feed-2"]
        if provider_type == "outage_stream_test":
            expected = ["stream-0", "stream-1"]
        assert wait_until(lambda: (got := inbox_event_ids(http, cid)) == expected and got)


@pytest.mark.parametrize(
    ("error", "readiness"), [("permanent", "misconfigured"), ("config", "misconfigured")]
)
def test_a_poll_that_will_fail_again_is_misconfigured_and_retried_slowly(
    api, tenant, make_connector, client, wait_until, error, readiness
):
    """An error that cannot pass by itself (the feed's URL is gone, the system refuses
    the config) shows the connector needs fixing; it is tried again at the backoff's cap
    (1 s here), so a fix made outside Jackfield is picked up without a restart."""
    key, cid = _outage(make_connector, tenant, "outage_feed_test", error)
    with client(api.url, tenant.user_token) as http:
        wait_until(lambda: Upstream.FAILURES.get(key, 0) >= 4, timeout=20)
        unit = runtime_unit(http, cid)
        assert (unit["liveness"], unit["readiness"]) == ("running", readiness), unit
        assert unit["restart_count"] == 0
        assert unit["last_error"].startswith(f"{ERRORS[error].__name__}: ")

        Upstream.DOWN.discard(key)
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "ready" and u
        )
        assert unit["last_error"] is None and unit["restart_count"] == 0
        assert wait_until(lambda: inbox_event_ids(http, cid) == ["feed-0", "feed-1", "feed-2"])


def test_a_delivery_that_works_again_clears_the_error_it_showed(
    api, tenant, make_connector, client, wait_until
):
    """Before, ``runtime status`` showed the unit ``ready`` again with the
    ``TransientError`` of a failure that was over."""
    cid = make_connector(tenant.admin, retry={"base_seconds": "1"})  # echo
    with client(api.url, tenant.admin_token) as http:
        body = {"payload": {"text": "hi", "simulate": "transient:3"}, "envelope_id": str(ULID())}
        assert http.post(f"/api/connectors/{cid}/messages", json=body).status_code == 202
        wait_until(lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "degraded")
        sent = wait_until(
            lambda: (
                (m := http.get(f"/api/outbox/{body['envelope_id']}").json())["state"] == "delivered"
                and m
            ),
            timeout=30,
        )
        assert sent["attempts"] == 4
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "ready" and u
        )
        assert unit["last_error"] is None


OPEN_OUTAGES = [
    ("connection", "unreachable"),
    ("transient", "degraded"),
    ("rate_limited", "degraded"),
]


def _waiting_to_open(http, cid):
    unit = runtime_unit(http, cid)
    return unit and unit["next_restart_at"] is not None and unit


@pytest.mark.parametrize(("error", "readiness"), OPEN_OUTAGES)
def test_a_system_down_when_the_unit_opens_is_waited_out(
    api, tenant, make_connector, client, wait_until, error, readiness
):
    """Before, each open that failed because the system was down counted as a crash:
    the third marked the unit ``failed``, which only an operator's restart undid once
    the system was back."""
    key, cid = _outage(make_connector, tenant, "outage_open_feed_test", error)
    with client(api.url, tenant.user_token) as http:
        wait_until(lambda: Upstream.FAILURES.get(key, 0) >= 5, timeout=20)
        unit = wait_until(lambda: _waiting_to_open(http, cid))
        assert (unit["liveness"], unit["readiness"]) == ("restarting", readiness), unit
        assert unit["last_error"].startswith(f"{ERRORS[error].__name__}: "), unit
        assert "upstream.invalid is having an outage" in unit["last_error"]

        Upstream.DOWN.discard(key)  # the system is back
        unit = wait_until(
            lambda: (
                (u := runtime_unit(http, cid))
                and (u["liveness"], u["readiness"]) == ("running", "ready")
                and u
            )
        )
        assert unit["last_error"] is None and unit["next_restart_at"] is None
        assert wait_until(lambda: inbox_event_ids(http, cid) == ["feed-0", "feed-1", "feed-2"])


@pytest.mark.parametrize(("error", "readiness"), OPEN_OUTAGES[:2])
def test_messages_wait_while_their_connector_cannot_open_and_go_out_once_it_can(
    api, tenant, make_connector, client, wait_until, error, readiness
):
    key, cid = _outage(make_connector, tenant, "outage_open_sender_test", error)
    with client(api.url, tenant.admin_token) as http:
        body = {"payload": {"text": "hi"}, "envelope_id": str(ULID())}
        assert http.post(f"/api/connectors/{cid}/messages", json=body).status_code == 202
        wait_until(lambda: Upstream.FAILURES.get(key, 0) >= 5, timeout=20)
        unit = wait_until(lambda: _waiting_to_open(http, cid))
        assert (unit["liveness"], unit["readiness"]) == ("restarting", readiness), unit
        message = http.get(f"/api/outbox/{body['envelope_id']}").json()
        # waiting, not tried: pending (or, for a moment, claimed and released again)
        assert message["state"] in ("pending", "in_flight") and message["attempts"] == 0, message

        Upstream.DOWN.discard(key)
        sent = wait_until(
            lambda: (
                (m := http.get(f"/api/outbox/{body['envelope_id']}").json())["state"] == "delivered"
                and m
            ),
            timeout=15,
        )
        assert sent["attempts"] == 1
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "ready" and u
        )
        assert unit["liveness"] == "running" and unit["last_error"] is None


@pytest.mark.parametrize(
    ("error", "readiness"), [("auth", "auth_failed"), ("config", "misconfigured")]
)
def test_wrong_credentials_or_config_at_open_still_end_failed(
    api, tenant, make_connector, client, wait_until, error, readiness
):
    """They do not pass by themselves: crashes, ``failed`` after the limit (two here)."""
    key, cid = _outage(make_connector, tenant, "outage_open_feed_test", error)
    with client(api.url, tenant.user_token) as http:
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["liveness"] == "failed" and u
        )
        assert unit["readiness"] == readiness and unit["restart_count"] == 2
        assert Upstream.FAILURES[key] == 3


def test_the_outage_backoff_grows_for_a_flapping_source_and_starts_over_after_it_worked():
    """Before, a source that failed once every five minutes, working in between, waited
    the 60 s cap at every blip (and handed its lease over) for ever; and, the other way,
    a broker that accepted each connection only to drop it at once never backed off."""
    from jackfield.runtime.supervisor import SupervisorConfig
    from jackfield.runtime.unit_health import UnitHealth
    from jackfield.runtime.units import Unit

    async def waits(worked_for: float) -> list[float]:
        loop = asyncio.get_running_loop()
        now = [loop.time()]
        loop.time = lambda: now[0]  # type: ignore[method-assign]
        health = UnitHealth(SupervisorConfig().backoff, mark=lambda unit: None)
        unit = Unit("c1", "o1")
        delays = []
        for _ in range(8):
            delays.append(health.outage_delay(unit, ConnectionFailedError("x")))
            now[0] += delays[-1]
            unit.working_since = now[0]  # it works again ...
            now[0] += worked_for  # ... for this long, then fails
        return delays

    sporadic = asyncio.run(waits(worked_for=300))
    assert max(sporadic) < 2  # each blip is retried at once (1 s, with jitter)
    flapping = asyncio.run(waits(worked_for=1))
    assert flapping[0] < 2 and flapping[-1] > 30  # it backs off, to the cap
