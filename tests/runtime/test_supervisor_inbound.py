"""Units of connectors with an inbound source start with the runtime, without any
outbound traffic; a crashing source is restarted; a provider that cannot open reports
why (readiness) instead of running.

More than two crashes within the window mark a unit ``failed`` here, so each unit's
whole life -- start, two restarts with backoff, failed -- takes about a second."""

from __future__ import annotations

import logging
import uuid
from typing import ClassVar

import pytest

from jackfield import ConfigField, connector_registry
from jackfield.kernel import (
    ConnectionFailedError,
    ConnectorConfigError,
    InboundEvent,
    MessagingProvider,
    OutboundMessage,
    PollingSource,
    SentMessage,
)
from jackfield.secrets import SecretKeyError

from .conftest import runtime_unit


class TickerProvider(MessagingProvider, PollingSource):
    """Polls a counter; ``mode`` makes it crash, or fail to open."""

    provider_type: ClassVar[str] = "ticker_test"
    display_name: ClassVar[str] = "Ticker (tests)"
    poll_interval_seconds = 0.05

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [
            ConfigField("mode", "Mode", default="ok"),
            ConfigField("api_key", "Key", secret=True),
        ]

    def open(self) -> None:
        if self.config.get("mode") == "nokey":
            raise ConnectorConfigError("no API key", field_errors={"api_key": "required"})
        if self.config.get("mode") == "sealed":  # as reading its config under a lost key
            raise SecretKeyError("a secret is sealed under a key this node does not have")

    failed_once: ClassVar[set[str]] = set()

    def poll(self, cursor: str | None) -> tuple[list[InboundEvent], str | None]:
        if self.config.get("mode") == "crash":
            raise RuntimeError("poll exploded")
        if (
            self.config.get("mode") == "crash_once"
            and self.config["api_key"] not in self.failed_once
        ):
            self.failed_once.add(self.config["api_key"])
            raise TypeError("poll tripped over its own bug, once")
        if self.config.get("mode") == "flaky" and self.config["api_key"] not in self.failed_once:
            self.failed_once.add(self.config["api_key"])
            raise ConnectionFailedError("ticker.invalid does not answer, once")
        if self.config.get("mode") == "dict_cursor":  # a provider's mistakes
            return [], {"page": 2}
        if self.config.get("mode") == "no_cursor":
            return []
        n = int(cursor or 0)
        if n >= 3:
            return [], cursor
        return [InboundEvent(f"tick-{n}", "tick", {"n": n})], str(n + 1)

    def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="t")


if not connector_registry.is_registered("messaging", "ticker_test"):
    connector_registry.register(TickerProvider)


@pytest.fixture
def jf(sqlite_url, make_jf):
    return make_jf(sqlite_url, supervisor_crash_limit=2)


def test_an_inbound_unit_runs_without_outbound_traffic_and_polls(
    api, tenant, make_connector, client, wait_until
):
    cid = make_connector(tenant.admin, "ticker_test")  # created after the runtime started
    with client(api.url, tenant.user_token) as http:
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["liveness"] == "running" and u
        )
        assert unit["readiness"] == "ready" and unit["restart_count"] == 0

        def ticks():
            items = http.get(f"/api/connectors/{cid}/events").json()["items"]
            return sorted(e["event_id"] for e in items) if len(items) == 3 else None

        assert wait_until(ticks) == ["tick-0", "tick-1", "tick-2"]


def _crash_records(caplog, cid):
    return [r for r in caplog.records if r.name.endswith("supervisor") and cid in r.getMessage()]


def test_a_crashing_source_is_restarted_and_its_error_shown(
    api, tenant, make_connector, client, wait_until, caplog
):
    cid = make_connector(tenant.admin, "ticker_test", mode="crash")
    with client(api.url, tenant.user_token) as http:
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["liveness"] == "failed" and u
        )
        assert unit["restart_count"] == 2
        assert "RuntimeError: poll exploded" in unit["last_error"]
    # a provider's bug: the log shows where it raised, on every crash and the failure
    records = _crash_records(caplog, cid)
    assert [r.levelname for r in records] == ["WARNING", "WARNING", "ERROR"]
    for record in records:
        where = logging.Formatter().formatException(record.exc_info)
        assert "in poll" in where and "RuntimeError: poll exploded" in where


def test_a_source_that_recovers_is_ready_again(api, tenant, make_connector, client, wait_until):
    """Before, a unit whose poll failed once stayed ``unreachable`` after its restart
    polled fine: only a delivery, an edit or an operator's restart cleared it. A poll
    failing with a ``ConnectionFailedError`` is no crash: the unit polls again without
    a restart, and is ready with no error left once that works."""
    cid = make_connector(tenant.admin, "ticker_test", mode="flaky", api_key=uuid.uuid4().hex)
    with client(api.url, tenant.user_token) as http:
        wait_until(lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "unreachable")
        unit = wait_until(
            lambda: (
                (u := runtime_unit(http, cid))
                and u["liveness"] == "running"
                and u["readiness"] == "ready"
                and u
            )
        )
        assert unit["restart_count"] == 0 and unit["last_error"] is None


def test_a_source_that_works_again_after_a_crash_shows_no_stale_error(
    api, tenant, make_connector, client, wait_until
):
    """Before, the restarted unit showed running and ready beside the crash's
    ``TypeError``, for as long as it ran: a crash leaves readiness ``ready``, and only
    a readiness other than ``ready`` had its error cleared when the source worked."""
    cid = make_connector(tenant.admin, "ticker_test", mode="crash_once", api_key=uuid.uuid4().hex)
    with client(api.url, tenant.user_token) as http:

        def recovered():
            unit = runtime_unit(http, cid)
            return unit and unit["restart_count"] == 1 and unit["liveness"] == "running" and unit

        wait_until(recovered)
        wait_until(lambda: len(http.get(f"/api/connectors/{cid}/events").json()["items"]) == 3)
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["last_error"] is None and u, timeout=5
        )
        assert (unit["liveness"], unit["readiness"], unit["restart_count"]) == (
            "running",
            "ready",
            1,
        )


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("dict_cursor", "TypeError: poll() must return its cursor as text or None, not dict"),
        ("no_cursor", "TypeError: poll() must return (events, cursor), not a list of 0"),
    ],
)
def test_a_poll_that_answers_the_wrong_shape_is_told_what_is_wrong(
    api, tenant, make_connector, client, wait_until, mode, says
):
    """Before: the database's error about a cursor it cannot bind (SQL and cursor
    included), or a bare 'not enough values to unpack'."""
    cid = make_connector(tenant.admin, "ticker_test", mode=mode)
    with client(api.url, tenant.user_token) as http:
        unit = wait_until(lambda: (u := runtime_unit(http, cid)) and u["last_error"] and u)
    assert unit["last_error"].startswith(says), unit["last_error"]


def test_a_unit_whose_secrets_cannot_be_read_is_not_ready(
    api, tenant, make_connector, client, wait_until
):
    """Before, a unit down on a key error showed readiness ``ready``."""
    cid = make_connector(tenant.admin, "ticker_test", mode="sealed")
    with client(api.url, tenant.user_token) as http:
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["liveness"] == "failed" and u
        )
    assert unit["readiness"] == "misconfigured" and "SecretKeyError" in unit["last_error"]


def test_a_unit_that_cannot_open_says_why(api, tenant, make_connector, client, wait_until, caplog):
    """A config or credential error at open does not pass by itself: each restart fails
    to open as well and counts as a crash, so the unit ends failed (not stuck
    "restarting", with its outbound messages held back for ever). A system that is
    down when the unit opens is an outage instead: see ``test_supervisor_outage``."""
    cid = make_connector(tenant.admin, "ticker_test", mode="nokey")
    with client(api.url, tenant.user_token) as http:
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["readiness"] == "missing_credential" and u
        )
        assert unit["liveness"] in ("crashed", "restarting", "failed")
        assert unit["last_error"]
        unit = wait_until(
            lambda: (u := runtime_unit(http, cid)) and u["liveness"] == "failed" and u
        )
        assert unit["restart_count"] == 2 and unit["readiness"] == "missing_credential"
    # a connector error explains itself: one line each, no traceback
    records = _crash_records(caplog, cid)
    assert len(records) == 3 and all(r.exc_info is None for r in records)
