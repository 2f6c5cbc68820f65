"""What a provider hands back that the worker cannot use as is: a ``Retry-After`` no date
can hold, or no outcome at all. Each costs only its own message an attempt; before,
building its ack raised inside the delivery worker, which left the message in flight
until its lease ran out (the messages behind it stalled with it) and never gave its
slot of the node's in-flight limit back."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import select

from jackfield import connector_registry
from jackfield.kernel import (
    InboundEvent,
    MessagingProvider,
    OutboundMessage,
    RateLimitedError,
    SentMessage,
)
from jackfield.kernel.envelope import Delivered, Envelope, Permanent
from jackfield.service.events import EventService
from jackfield.store.models_outbox import OutboxMessage

from .conftest import LeakyProvider


class ThrottledProvider(MessagingProvider):
    """Like an API whose 429 carries a timestamp in epoch milliseconds as Retry-After."""

    provider_type: ClassVar[str] = "throttled_test"
    display_name: ClassVar[str] = "Throttled (tests)"

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        if message.text == "throttle me":
            raise RateLimitedError("slow down", retry_after=1765000000000.0)
        return SentMessage(message_id="sent")


class _OverridesDeliver(MessagingProvider):
    """The base of providers whose ``deliver`` override is what a test is about (the
    category's method, which the base ``deliver`` would call, is just there)."""

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id="sent")


class NoOutcomeProvider(_OverridesDeliver):
    """A provider whose ``deliver`` override forgets to return its outcome."""

    provider_type: ClassVar[str] = "no_outcome_test"
    display_name: ClassVar[str] = "No outcome (tests)"

    async def deliver(self, envelope: Envelope) -> Any:
        if envelope.payload.get("text") == "forget":
            return None
        return await super().deliver(envelope)


class SyncDeliverProvider(_OverridesDeliver):
    """A provider that overrides ``deliver`` with a plain method (DESIGN: provider
    methods may be sync or async; sync ones run in a worker thread)."""

    provider_type: ClassVar[str] = "sync_deliver_test"
    display_name: ClassVar[str] = "Sync deliver (tests)"

    def deliver(self, envelope: Envelope) -> Any:  # type: ignore[override]
        if envelope.payload.get("text") == "refuse":
            return Permanent("Refused", "the recipient refused it")
        on_loop = threading.current_thread() is threading.main_thread()
        return Delivered({"ran_in_a_worker_thread": not on_loop})


class BadEventsProvider(_OverridesDeliver):
    """A provider whose delivery hands back events the inbox cannot store."""

    provider_type: ClassVar[str] = "bad_events_test"
    display_name: ClassVar[str] = "Bad events (tests)"

    async def deliver(self, envelope: Envelope) -> Any:
        event_id, payload = envelope.payload["event_id"], envelope.payload["event"]
        return Delivered({}, (InboundEvent(event_id, "made.by.delivery", payload),))


class CrashingLeakyProvider(LeakyProvider):
    """A provider bug whose exception quotes the credential (a traceback gets logged)."""

    provider_type: ClassVar[str] = "crashing_leaky_test"
    display_name: ClassVar[str] = "Crashing leaky (tests)"

    async def deliver(self, envelope: Envelope) -> Any:
        raise RuntimeError(f"unexpected crash with key {self.config['api_key']}")


class QuotingProvider(LeakyProvider):
    """Like a vendor whose answer (not only its error) quotes the credential it was sent."""

    provider_type: ClassVar[str] = "quoting_test"
    display_name: ClassVar[str] = "Quoting (tests)"

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        return SentMessage(message_id=f"sent with key {self.config['api_key']}")


for _provider in (
    ThrottledProvider,
    NoOutcomeProvider,
    SyncDeliverProvider,
    BadEventsProvider,
    CrashingLeakyProvider,
    QuotingProvider,
):
    if not connector_registry.is_registered("messaging", _provider.provider_type):
        connector_registry.register(_provider)


async def test_a_retry_after_beyond_any_date_waits_a_day_and_stalls_nothing(
    jf, tenant, make_connector
):
    cid = make_connector(tenant.admin, "throttled_test", runtime={"concurrency": "1"})
    await jf.start()
    try:
        throttled = await asyncio.to_thread(jf.send, cid, {"text": "throttle me"})
        behind = await asyncio.to_thread(jf.send_many, cid, [{"text": "go"}] * 5)
        rows = await _until(jf, cid, lambda r: r[throttled].state == "retrying", 6)
        await _until(jf, cid, lambda r: all(r[e].state == "delivered" for e in behind), 6)
    finally:
        await jf.stop()
    message = rows[throttled]
    assert (message.attempts, message.error_class) == (1, "RateLimitedError")
    in_a_day = datetime.now(UTC) + timedelta(days=1)
    assert in_a_day - timedelta(minutes=1) < message.next_attempt_at <= in_a_day


async def test_a_deliver_without_an_outcome_counts_as_a_crash_and_goes_to_dead(
    jf, tenant, make_connector
):
    cid = make_connector(
        tenant.admin, "no_outcome_test", retry={"max_attempts": "2", "base_seconds": "0.01"}
    )
    await jf.start()
    try:
        broken = await asyncio.to_thread(jf.send, cid, {"text": "forget"})
        behind = await asyncio.to_thread(jf.send_many, cid, [{"text": "fine"}] * 5)
        done = {"delivered", "dead"}
        rows = await _until(jf, cid, lambda r: all(m.state in done for m in r.values()), 15)
    finally:
        await jf.stop()
    assert [rows[e].state for e in behind] == ["delivered"] * 5
    dead = rows[broken]
    assert (dead.state, dead.attempts, dead.error_class) == ("dead", 2, "TypeError")
    assert "deliver() returned NoneType, not a DeliveryOutcome" in dead.last_error


async def test_a_sync_deliver_override_delivers_from_a_worker_thread(jf, tenant, make_connector):
    """Before, every attempt was a crash ("object Delivered can't be used in 'await'
    expression") and the message went dead."""
    cid = make_connector(tenant.admin, "sync_deliver_test")
    await jf.start()
    try:
        fine = await asyncio.to_thread(jf.send, cid, {"text": "hello"})
        refused = await asyncio.to_thread(jf.send, cid, {"text": "refuse"})
        done = {"delivered", "dead"}
        rows = await _until(jf, cid, lambda r: all(m.state in done for m in r.values()), 10)
    finally:
        await jf.stop()
    assert rows[fine].state == "delivered"
    assert rows[fine].result == {"ran_in_a_worker_thread": True}
    assert (rows[refused].state, rows[refused].error_class) == ("dead", "Refused")


async def test_events_of_a_delivery_that_the_inbox_cannot_store_make_it_dead(
    jf, tenant, make_connector
):
    """Before, an empty event id or a list payload was stored, and handlers got it. The
    same delivery would make them again: dead at once, not retried."""
    cid = make_connector(tenant.admin, "bad_events_test", retry={"base_seconds": "0.01"})
    await jf.start()
    try:
        sends = [
            {"event_id": "", "event": {"a": 1}},
            {"event_id": "listed", "event": ["a"]},
            {"event_id": "fine", "event": {"a": 1}},
        ]
        sent = [await asyncio.to_thread(jf.send, cid, p) for p in sends]
        done = {"delivered", "dead"}
        rows = await _until(jf, cid, lambda r: all(m.state in done for m in r.values()), 20)
    finally:
        await jf.stop()
    assert [rows[e].state for e in sent] == ["dead", "dead", "delivered"]
    assert {rows[e].error_class for e in sent[:2]} == {"InvalidEventError"}
    assert [rows[e].attempts for e in sent] == [1, 1, 1]
    assert "event_id must be 1 to 200 characters" in rows[sent[0]].last_error
    assert "the payload must be a dict, not list" in rows[sent[1]].last_error
    events = EventService(jf.db).list(tenant.admin, cid)["items"]
    assert [e["event_id"] for e in events] == ["fine"]


async def test_an_embedding_applications_own_log_handler_sees_secrets_masked(
    jf, tenant, make_connector
):
    """Before, only the CLI's handler masked: an application's handler (or Python's
    last-resort stderr) printed the crash's traceback with the key in it."""
    key = "sk_live_c0ffee-in-a-traceback"
    cid = make_connector(tenant.admin, "crashing_leaky_test", api_key=key)
    written = io.StringIO()
    handler = logging.StreamHandler(written)  # the application's, without Jackfield's filter
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        await jf.start()
        try:
            sent = await asyncio.to_thread(jf.send, cid, {"text": "hello"})
            await _until(jf, cid, lambda r: r[sent].state == "dead", 20)
        finally:
            await jf.stop()
    finally:
        logging.getLogger().removeHandler(handler)
    log = written.getvalue()
    assert "Traceback" in log and "unexpected crash with key ********" in log
    assert key not in log


async def test_a_result_quoting_a_secret_is_stored_masked(jf, tenant, make_connector):
    key = "key-5c1e7a-quoted-back"
    cid = make_connector(tenant.admin, "quoting_test", api_key=key)
    await jf.start()
    try:
        sent = await asyncio.to_thread(jf.send, cid, {"text": "hello"})
        await _until(jf, cid, lambda r: r[sent].state == "delivered", 10)
    finally:
        await jf.stop()
    with jf.db.engine.connect() as conn:  # the row as stored
        stored = conn.exec_driver_sql(
            "SELECT result FROM outbox_messages WHERE envelope_id = ?"
            if jf.db.engine.dialect.name == "sqlite"
            else "SELECT result::text FROM outbox_messages WHERE envelope_id = %s",
            (sent,),
        ).scalar()
    assert key not in stored and "sent with key ********" in stored


async def _until(jf, cid: str, ready, timeout: float) -> dict[str, OutboxMessage]:
    """The connector's messages by envelope id, once ``ready(them)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        with jf.db.transaction() as s:
            query = select(OutboxMessage).where(OutboxMessage.connector_id == cid)
            rows = {r.envelope_id: r for r in s.scalars(query)}
        if rows and ready(rows):
            return rows
        states = sorted(r.state for r in rows.values())
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.1)
