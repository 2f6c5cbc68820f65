"""``GET /api/events/stream`` on the live server: new events arrive as server-sent events,
only the caller's organization's, and ``Last-Event-ID`` resumes where a client left."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from jackfield.kernel import InboundEvent
from jackfield.runtime.inbox import add_events
from jackfield.service.events import EventService
from jackfield.store.models_inbound import InboxEvent


class SseClient:
    """Reads ``id``/``data`` events off an open ``text/event-stream`` response."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            fields: dict[str, str] = {}
            async for line in self.lines:
                if not line:
                    if "data" in fields:
                        data = json.loads(fields["data"], parse_constant=_not_json)
                        return {"cursor": fields["id"], **data}
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
            raise AssertionError("the stream ended")

        return await asyncio.wait_for(read(), timeout)

    async def assert_quiet(self, seconds: float) -> None:
        with pytest.raises(TimeoutError):
            await self.next_event(timeout=seconds)


def _not_json(constant: str) -> None:
    raise AssertionError(f"the stream sent {constant}, which is not JSON")


@asynccontextmanager
async def stream(
    api, token: str | None, last_event_id: int | str | None = None
) -> AsyncIterator[Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=30)) as client,
        client.stream("GET", f"{api.url}/api/events/stream", headers=headers) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            yield response
            return
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = SseClient(response)
        first = await asyncio.wait_for(anext(sse.lines), 5)  # "retry: ..." once subscribed
        assert first.startswith("retry:")
        yield sse


async def test_a_client_receives_an_event_sent_after_it_connected(
    jf, api, webhook_connector, org_token, sign, as_json
):
    async with stream(api, org_token) as sse:
        body = as_json({"type": "invoice.paid", "amount": 5})
        async with httpx2.AsyncClient() as client:
            answer = await client.post(
                f"{api.url}/hooks/{webhook_connector}", content=body, headers=sign(body)
            )
        assert answer.status_code == 200
        event = await sse.next_event()
    assert event["event_type"] == "invoice.paid" and event["payload"]["amount"] == 5
    assert event["connector_id"] == webhook_connector and event["source"] == "webhook"


async def test_events_committed_by_another_process_arrive_too(
    jf, api, org, webhook_connector, org_token
):
    """A row written straight to the database (another node, ``sim inject``) with no
    wake-up in this process: the stream's poller finds it."""
    async with stream(api, org_token) as sse:
        with jf.db.transaction() as s:
            add_events(s, webhook_connector, org, [InboundEvent("far-1", "far", {})], "polling")
        event = await sse.next_event()
    assert event["event_id"] == "far-1"


async def test_a_failed_read_of_the_inbox_does_not_end_the_live_feed(
    jf, api, org, webhook_connector, org_token
):
    """A read of the poller that fails (a failover; here the table is briefly away)
    ended the poller, and every open stream went on with keep-alives only."""
    async with stream(api, org_token) as sse:
        with jf.db.engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE inbox_events RENAME TO inbox_events_away")
        await asyncio.sleep(1.2)  # the poller (every 0.5 s) fails to read
        with jf.db.engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE inbox_events_away RENAME TO inbox_events")
        with jf.db.transaction() as s:
            add_events(s, webhook_connector, org, [InboundEvent("back-1", "b", {})], "polling")
        event = await sse.next_event()
    assert event["event_id"] == "back-1"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL refused them
async def test_a_row_stored_before_payloads_were_checked_still_reads_as_json(
    jf, api, org, webhook_connector, org_token
):
    """Earlier versions stored polled payloads through the ORM's ``json.dumps``: NaN as
    ``NaN`` and an unpaired surrogate escaped (SQLite took both; PostgreSQL refused).
    Such a row streams, and lists, as valid JSON."""
    async with stream(api, org_token) as sse:
        with jf.db.transaction() as s:
            s.add(
                InboxEvent(
                    connector_id=webhook_connector,
                    organization_id=org,
                    event_id="old-1",
                    event_type="old",
                    payload={"n": math.nan, "t": "a\ud800"},
                    source="polling",
                )
            )
        event = await sse.next_event()
    assert (event["event_id"], event["payload"]) == ("old-1", {"n": None, "t": "a\ufffd"})
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {org_token}"}) as client:
        listed = await client.get(f"{api.url}/api/connectors/{webhook_connector}/events")
    assert listed.status_code == 200, listed.text
    [item] = json.loads(listed.text, parse_constant=_not_json)["items"]
    assert (item["event_id"], item["payload"]) == ("old-1", {"n": None, "t": "a\ufffd"})


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


async def test_another_organization_never_sees_the_events(
    jf, api, admin, other_admin, webhook_connector, org_token, token_for
):
    events = EventService(jf.db)
    theirs = jf.connectors.create(
        other_admin, name="b-hook", category="messaging", provider_type="echo", config={}
    )["id"]
    async with (
        stream(api, org_token) as stream_a,
        stream(api, token_for(other_admin.organization_id)) as stream_b,
    ):
        for n in range(3):
            events.inject(admin, webhook_connector, {"n": n}, event_id=f"a-{n}")
        events.inject(other_admin, theirs, {"for": "b"}, event_id="b-0")
        # b's first event is its own, although a's three were committed before it
        assert (await stream_b.next_event())["event_id"] == "b-0"
        assert [(await stream_a.next_event())["event_id"] for _ in range(3)] == [
            "a-0",
            "a-1",
            "a-2",
        ]
        await stream_a.assert_quiet(0.8)
        await stream_b.assert_quiet(0.2)


async def test_last_event_id_resumes_after_the_last_event_seen(
    jf, api, admin, webhook_connector, org_token
):
    events = EventService(jf.db)
    seen = events.inject(admin, webhook_connector, {}, event_id="r-0")
    for n in (1, 2):
        events.inject(admin, webhook_connector, {}, event_id=f"r-{n}")
    async with stream(api, org_token, last_event_id=seen["id"]) as sse:
        missed = [(await sse.next_event())["event_id"] for _ in range(2)]
        events.inject(admin, webhook_connector, {}, event_id="r-3")
        live = await sse.next_event()
    assert missed == ["r-1", "r-2"] and live["event_id"] == "r-3"


async def test_a_last_event_id_beyond_the_newest_event_resumes_from_the_newest(
    jf, api, admin, webhook_connector, org_token
):
    """A browser that kept its ``Last-Event-ID`` across a restore of an older backup (or
    a reset database) named an id no stored event had reached: every new event was taken
    as one it had, and the stream sent nothing, without an error, until ids caught up."""
    events = EventService(jf.db)
    newest = events.inject(admin, webhook_connector, {}, event_id="b-0")["id"]
    for cursor in (f"{newest + 1000}", f"{newest + 1000}~{newest + 5}"):
        async with stream(api, org_token, last_event_id=cursor) as sse:
            events.inject(admin, webhook_connector, {}, event_id=f"after-{cursor}")
            assert (await sse.next_event())["event_id"] == f"after-{cursor}"  # not b-0 again
            await sse.assert_quiet(0.8)


def _held_open(jf, org: str, connector_id: str, event_id: str) -> Session:
    """A transaction that has inserted an event (its id drawn) and not committed yet."""
    session = Session(jf.db.engine)
    add_events(session, connector_id, org, [InboundEvent(event_id, "slow", {})], "polling")
    session.flush()
    return session


def _committed(jf, org: str, connector_id: str, event_id: str) -> None:
    with jf.db.transaction() as s:
        add_events(s, connector_id, org, [InboundEvent(event_id, "fast", {})], "polling")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # ids drawn before commit
async def test_a_row_committed_after_a_higher_one_still_arrives(
    jf, api, org, webhook_connector, org_token
):
    slow = _held_open(jf, org, webhook_connector, "slow")
    async with stream(api, org_token) as sse:
        _committed(jf, org, webhook_connector, "fast")
        fast = await sse.next_event()
        slow.commit()
        late = await sse.next_event()
    assert (fast["event_id"], late["event_id"]) == ("fast", "slow")
    assert late["id"] < fast["id"]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_client_resuming_gets_a_row_committed_below_its_last_event_while_away(
    jf, api, org, webhook_connector, org_token
):
    """The stream sent id 6357 while 6356 was uncommitted; the client reconnected with
    ``Last-Event-ID: 6357`` after 6356 committed, and never received it (found by a
    three-node soak). The cursor names the ids still open below it."""
    slow = _held_open(jf, org, webhook_connector, "slow")
    async with stream(api, org_token) as sse:
        _committed(jf, org, webhook_connector, "fast")
        fast = await sse.next_event()
    slow.commit()  # while the client is away
    assert fast["cursor"] != str(fast["id"])  # it names the open id below

    async with stream(api, org_token, last_event_id=fast["cursor"]) as sse:
        late = await sse.next_event()
        _committed(jf, org, webhook_connector, "next")
        after = await sse.next_event()
    assert (late["event_id"], after["event_id"]) == ("slow", "next")  # "fast" not again


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_client_resuming_before_the_late_row_commits_gets_it_live(
    jf, api, org, webhook_connector, org_token
):
    """Its cursor's open id is looked for again, although the node it reconnects to has
    never seen that gap (here: the poller stopped with its last client, and starts
    afresh, as another node's would)."""
    slow = _held_open(jf, org, webhook_connector, "slow")
    async with stream(api, org_token) as sse:
        _committed(jf, org, webhook_connector, "fast")
        fast = await sse.next_event()
    await asyncio.sleep(1.5)
    async with stream(api, org_token, last_event_id=fast["cursor"]) as sse:
        await asyncio.sleep(1.0)  # the poller has looked (and found nothing) a few times
        slow.commit()
        assert (await sse.next_event())["event_id"] == "slow"


async def test_an_unusable_last_event_id_is_ignored(jf, api, admin, webhook_connector, org_token):
    events = EventService(jf.db)
    unusable_ones = ("not-a-number", "9" * 5000, "12~13", "12~x", "12~3-", "12~" + "1," * 900)
    for n, unusable in enumerate(unusable_ones):  # (5000 digits was a 500)
        async with stream(api, org_token, last_event_id=unusable) as sse:
            events.inject(admin, webhook_connector, {}, event_id=f"u-{n}")
            assert (await sse.next_event())["event_id"] == f"u-{n}"


async def test_the_stream_needs_credentials(api):
    async with stream(api, None) as response:
        assert response.status_code == 401


async def test_a_stream_ends_once_its_token_is_removed(
    jf, api, admin, webhook_connector, org_token, monkeypatch
):
    """Before, an open stream went on sending the organization's events after its token
    was removed (and after its user logged out of the UI: the same check)."""
    from jackfield.api.routes import events as events_route
    from jackfield.service.passwords import hash_token
    from jackfield.store import ApiToken

    monkeypatch.setattr(events_route, "RECHECK_SECONDS", 0.3)
    events = EventService(jf.db)
    async with stream(api, org_token) as sse:
        events.inject(admin, webhook_connector, {}, event_id="before")
        assert (await sse.next_event())["event_id"] == "before"
        with jf.db.transaction() as s:  # (no command revokes a token yet)
            s.delete(
                s.scalars(
                    select(ApiToken).where(ApiToken.token_hash == hash_token(org_token))
                ).one()
            )
        await asyncio.sleep(0.5)
        events.inject(admin, webhook_connector, {"secret plans": 1}, event_id="after")
        with pytest.raises(AssertionError, match="the stream ended"):
            await sse.next_event()


async def test_ids_a_cursor_names_that_were_committed_long_ago_go_to_no_other_stream(
    jf, api, admin, other_admin, webhook_connector, org_token, token_for
):
    """A cursor's open ids may turn out to be another organization's rows (they were
    open when it was sent), and a client may name any ids: the shared poller looked for
    them, found the committed rows and sent them to every stream of their organization
    again -- a client connected since got an old event as new."""
    events = EventService(jf.db)
    old = events.inject(admin, webhook_connector, {}, event_id="old")["id"]
    theirs = token_for(other_admin.organization_id)
    async with (
        stream(api, org_token) as fresh,
        stream(api, theirs, last_event_id=f"{old + 1}~{old}"),
    ):
        await asyncio.sleep(1.5)  # the poller has looked for them a few times
        events.inject(admin, webhook_connector, {}, event_id="new")
        assert (await fresh.next_event())["event_id"] == "new"  # before: "old"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_ids_named_by_resuming_clients_never_push_out_the_pollers_own_gaps(
    jf, api, org, other_admin, webhook_connector, org_token, token_for
):
    """Another organization's client reconnecting with cursors naming 1000 ids each
    filled the poller's gaps (10,000 at most, oldest dropped first): the gap of a row
    still uncommitted was forgotten, and when it committed no stream received it."""
    slow = _held_open(jf, org, webhook_connector, "slow")
    theirs = token_for(other_admin.organization_id)
    async with stream(api, org_token) as sse:
        _committed(jf, org, webhook_connector, "fast")
        assert (await sse.next_event())["event_id"] == "fast"
        base = 10**12
        for n in range(11):
            low = base + n * 1000
            async with stream(api, theirs, last_event_id=f"{base * 2}~{low}-{low + 999}"):
                await asyncio.sleep(0.6)  # the poller takes them in
        slow.commit()
        assert (await sse.next_event())["event_id"] == "slow"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_thousands_of_open_gaps_cost_each_event_little(jf, org, webhook_connector):
    """Every duplicate webhook draws an id on PostgreSQL, so a sender repeating a few
    hundred a second leaves thousands of gaps open: each event's cursor went through
    all of them for every stream (5000 gaps: about 2 ms per event per stream, on the
    event loop), to fall back below the lowest in the end. Here the gaps are ids skipped
    on SQLite."""
    from jackfield.runtime.inbound.feed import EventFeed

    feed = EventFeed(jf.db, poll_interval=0.05)
    streams = [feed.stream(org, keepalive=30) for _ in range(4)]
    try:
        for live in streams:
            await anext(live)
        with jf.db.transaction() as s:
            add_events(s, webhook_connector, org, [InboundEvent("first", "t", {})], "polling")
        firsts = [await anext(live) for live in streams]
        first = firsts[0]
        assert first is not None
        base = first[0].id
        with jf.db.transaction() as s:  # 10,000 ids skipped ...
            s.add(InboxEvent(**_row(first[0], "jump", base + 10_001)))
        for live in streams:
            assert (await anext(live)) is not None  # "jump"
        other = jf.accounts.create_org("other-org")["id"]
        with jf.db.transaction() as s:  # ... every other one filled late (another org's)
            s.execute(
                insert(InboxEvent),
                [_row(first[0], f"o-{n}", n, other) for n in range(base + 2, base + 10_001, 2)],
            )
        await asyncio.sleep(1.0)  # the poller has read them: 5000 gaps, 5000 runs
        with jf.db.transaction() as s:
            events = [InboundEvent(f"e-{n}", "t", {}) for n in range(300)]
            add_events(s, webhook_connector, org, events, "polling")
        started = time.monotonic()
        for live in streams:
            for _ in range(300):
                item = await anext(live)
                assert item is not None
        elapsed = time.monotonic() - started
        assert str(item[1]) == str(first[0].id)  # over 1000 ids open: below the lowest
        assert elapsed < 0.5  # before: over 1 s (0.1 s now)
    finally:
        for live in streams:
            await live.aclose()
        await feed.close()


def _row(like, event_id: str, row_id: int, org: str | None = None) -> dict[str, Any]:
    return {
        "id": row_id,
        "connector_id": like.connector_id,
        "organization_id": org or like.organization_id,
        "event_id": event_id,
        "event_type": "t",
        "payload": {},
        "source": "polling",
    }
