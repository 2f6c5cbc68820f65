"""The live feed of new inbox events, per organization (what SSE clients receive).

One poller per process reads rows newer than the last it saw (``id > last``) and fans
them out to the subscribers of each row's organization. It polls on a short interval,
so events committed by other processes and nodes arrive too, and ``wake()`` (called
after a local commit) makes it poll at once, so local events arrive without delay. The
poller runs only while somebody listens.

PostgreSQL hands out ids before commit, so a row with a lower id can become visible
after a higher one. Ids skipped over are remembered as gaps for ``GAP_SECONDS`` and
asked for again, so such late rows are still delivered (possibly after higher ids).

Each event goes out with a ``StreamCursor``: its id, or a higher one already sent, plus
the gaps below it still open -- what the client has. A subscriber resuming with it
(``Last-Event-ID``) first gets its organization's rows that filled those gaps meanwhile
and the rows after the cursor's id (catch-up from the table), then the live rows; the
gaps it names that are still open are looked for again by the poller (kept apart from
its own gaps, at most ``MAX_SOUGHT``; such a row goes only to the streams that lack it:
a client may name any id, an old row of another organization say), and nothing the
cursor says the client has is sent again. A cursor beyond the newest stored event (a
database restored from a backup) resumes from that event instead. A subscriber too slow
to keep up (its queue fills) is closed; it reconnects with its cursor and catches up from
the table, so nothing is lost. A read that fails (a failover, say) is tried again a
second later from the same position: the streams stay open and miss nothing.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select

from ...kernel.redaction import get_logger
from ...service.events import EventRecord, EventService
from ...store import Database
from ...store.models_inbound import InboxEvent
from ..waits import wait_until_set
from .stream_cursor import MAX_PENDING, MAX_RANGES, StreamCursor

log = get_logger(__name__)

BATCH = 500
GAP_SECONDS = 30.0
MAX_GAPS = 10_000
MAX_SOUGHT = 10_000  # ids resuming clients named as lacking, looked for as long as gaps
SEEN_WINDOW = 10_000
RETRY_SECONDS = 1.0  # after a failed read


def set_soon(loop: asyncio.AbstractEventLoop | None, event: asyncio.Event | None) -> None:
    """Set ``event`` (bound to ``loop``) from any thread, as cheaply as possible.

    Called after every commit, so: nothing when already set, a direct ``set()`` on the
    loop's own thread, ``call_soon_threadsafe`` (a syscall) only from other threads.
    """
    if loop is None or event is None or event.is_set():
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        event.set()
        return
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # the loop has closed: nobody is waiting any more
        pass


# an event, the gaps open when the poller read it (what its cursor must still name), and
# whether it was found only as an id resuming clients lacked (for those clients alone)
_Delivery = tuple[EventRecord, tuple[int, ...], bool]


@dataclass(eq=False)
class _Subscriber:
    organization_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[_Delivery | None] = field(default_factory=lambda: asyncio.Queue(1000))
    closed: bool = False

    def offer(self, item: _Delivery | None) -> None:
        """Queue ``item`` (``None`` closes); a full queue closes the subscriber."""
        if self.closed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            self.closed = True
            return
        if item is None:
            self.closed = True


class _Sent:
    """What one subscriber's client has: the ids sent recently (bounded, to skip a second
    copy), the highest one, and -- when it resumed -- what its cursor said it had."""

    def __init__(self, resume: StreamCursor | None) -> None:
        self._ids: set[int] = set()
        self._order: deque[int] = deque()
        self._resumed_at = resume.last if resume else 0
        self.last = self._resumed_at
        # ids at or below the resumed cursor that it still lacked: looked for a while
        self.owed = set(resume.pending) if resume else set()
        self._owed_until = time.monotonic() + GAP_SECONDS

    def take(self, record_id: int) -> bool:
        """Whether to send ``record_id`` (the client lacks it); noted as sent if so."""
        if record_id in self._ids:
            return False
        if record_id <= self._resumed_at and record_id not in self.owed:
            return False  # its cursor says the client has it
        self.owed.discard(record_id)
        self._ids.add(record_id)
        self._order.append(record_id)
        if len(self._order) > SEEN_WINDOW:
            self._ids.discard(self._order.popleft())
        self.last = max(self.last, record_id)
        return True

    def cursor(self, open_gaps: tuple[int, ...]) -> StreamCursor:
        """The cursor once the client has what was taken; ``open_gaps`` sorted. Bounded
        work per event whatever the gaps (thousands on PostgreSQL when a sender repeats
        webhooks: each duplicate draws an id): past ``MAX_RANGES`` runs or ``MAX_PENDING``
        ids the cursor falls back below the lowest anyway, so no more are looked at."""
        if self.owed and time.monotonic() > self._owed_until:
            self.owed.clear()  # as the poller gives up on a gap
        pending = set(self.owed)  # all below ``_resumed_at``: runs apart from the gaps'
        runs, previous = 0, None
        low = bisect_right(open_gaps, self._resumed_at)
        for index in range(low, bisect_left(open_gaps, self.last, low)):
            gap = open_gaps[index]
            if gap in self._ids:
                continue
            runs += gap - 1 != previous
            previous = gap
            pending.add(gap)
            if runs > MAX_RANGES or len(pending) > MAX_PENDING:  # as StreamCursor would:
                return StreamCursor(min(pending) - 1)  # below the lowest, which is here
        return StreamCursor(self.last, frozenset(pending))


class EventFeed:
    def __init__(self, db: Database, *, poll_interval: float = 0.5) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self._service = EventService(db)
        self._subscribers: set[_Subscriber] = set()
        self._last = 0
        self._gaps: dict[int, float] = {}
        self.open_gaps: tuple[int, ...] = ()  # ``_gaps`` as of the last read, sorted
        self._wanted: deque[int] = deque()  # ids resumed clients lack: to be sought
        self._sought: dict[int, float] = {}  # those ids, looked for until GAP_SECONDS
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None

    def wake(self) -> None:
        """Poll now (thread-safe; a no-op while nobody listens)."""
        set_soon(self._loop, self._wakeup)

    async def stream(
        self,
        organization_id: str,
        resume: StreamCursor | None = None,
        *,
        keepalive: float = 15.0,
    ) -> AsyncGenerator[tuple[EventRecord, StreamCursor] | None, None]:
        """New events of one organization, forever, each with the cursor the client
        has once it received it. The first item is ``None``, as soon as the subscription
        is registered (from then on nothing is missed); later ones are ``None`` every
        ``keepalive`` seconds without events (for the caller to send a keep-alive).
        Ends if the subscriber fell behind or the feed closed."""
        await self._ensure_running()
        sub = _Subscriber(organization_id, asyncio.get_running_loop())
        self._subscribers.add(sub)
        position = self._last
        if resume is not None and resume.last > position:
            resume = await asyncio.to_thread(self._within_stored, resume)
        sent = _Sent(resume)
        try:
            yield None
            if resume is not None:
                async for missed in self._catch_up(organization_id, resume, position):
                    if sent.take(missed.id):
                        yield missed, sent.cursor(self.open_gaps)
                self._wanted.extend(sent.owed)  # not committed yet: the poller looks again
                self.wake()
            while True:
                try:  # not asyncio.wait_for: see ``runtime.waits``
                    async with asyncio.timeout(keepalive):
                        item = await sub.queue.get()
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    return
                record, open_gaps, owed_only = item
                if owed_only and record.id not in sent.owed:
                    continue  # an old row: only a client whose cursor lacks it wants it
                if sent.take(record.id):
                    yield record, sent.cursor(open_gaps)
        finally:
            self._subscribers.discard(sub)

    async def close(self) -> None:
        """End every stream and stop polling."""
        for sub in list(self._subscribers):
            self._deliver(sub, None)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._loop = self._wakeup = None

    async def _catch_up(
        self, organization_id: str, resume: StreamCursor, up_to: int
    ) -> AsyncIterator[EventRecord]:
        """The rows a resuming client lacks: those that filled its cursor's gaps, then
        those after its cursor, up to where the live feed takes over."""
        if resume.pending:
            late = await asyncio.to_thread(
                self._service.among, organization_id, sorted(resume.pending)
            )
            for record in late:
                yield record
        after = resume.last
        while after < up_to:
            batch = await asyncio.to_thread(
                self._service.since, organization_id, after, up_to, BATCH
            )
            for record in batch:
                yield record
            if len(batch) < BATCH:
                return
            after = batch[-1].id

    async def _ensure_running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._last = await asyncio.to_thread(self._max_id)
        if self._task is not None and not self._task.done():
            return  # another subscriber started it while we read
        self._gaps.clear()
        self._sought.clear()
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="jackfield-event-feed")

    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            await wait_until_set(wakeup, self.poll_interval)
            wakeup.clear()
            if not self._subscribers:
                self._task = None  # the next subscriber starts a fresh poller
                return
            try:
                await self._poll()
            except Exception as exc:  # noqa: BLE001 - e.g. a failover: read again, from where it was
                log.warning("reading new events for the live streams failed: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _poll(self) -> None:
        while True:
            records = await asyncio.to_thread(self._fetch)
            open_gaps = self.open_gaps
            for record, owed_only in records:
                for sub in list(self._subscribers):
                    if sub.organization_id == record.organization_id:
                        self._deliver(sub, (record, open_gaps, owed_only))
            if len(records) < BATCH:
                return

    @staticmethod
    def _deliver(sub: _Subscriber, item: _Delivery | None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if sub.loop is running:
            sub.offer(item)
        else:
            sub.loop.call_soon_threadsafe(sub.offer, item)

    def _within_stored(self, resume: StreamCursor) -> StreamCursor:
        """``resume``, or -- when it is beyond the newest stored event -- the cursor of
        that event, keeping the ids up to it the client lacked.

        A cursor names an event the client received, committed then, so it is beyond
        the newest stored one only if the database is not the one the client streamed
        from (restored from a backup, reset) or the newest events were deleted. Kept as
        it is, every new event at or below it would be taken as one the client has, and
        the stream would send nothing, silently, until ids caught up. Every stored event
        up to the newest is one the client has (but those it lacked), so nothing is
        sent twice; and on PostgreSQL an id drawn before the newest and not committed
        yet is delivered, being above it. Asked only when the cursor is ahead of this
        process's feed (another node's feed may be ahead of it): no cost otherwise."""
        newest = self._max_id()
        if resume.last <= newest:
            return resume
        log.info(
            "a live-stream client resumed from event id %s, beyond the newest stored (%s):"
            " the database was restored or reset, or the newest events deleted; streaming"
            " what comes after %s",
            resume.last,
            newest,
            newest,
        )
        return StreamCursor(newest, frozenset(p for p in resume.pending if p <= newest))

    def _max_id(self) -> int:
        with self.db.snapshot() as s:
            return int(s.scalar(select(func.max(InboxEvent.id))) or 0)

    def _fetch(self) -> list[tuple[EventRecord, bool]]:
        """Rows after ``_last`` plus late rows that fill earlier gaps, oldest first, each
        with whether it was found only as a sought id (for the streams lacking it)."""
        now = time.monotonic()
        gaps_before = len(self._gaps)
        while self._wanted:
            self._sought.setdefault(self._wanted.popleft(), now)
        for sought, since in list(self._sought.items()):
            if now - since > GAP_SECONDS or len(self._sought) > MAX_SOUGHT:
                del self._sought[sought]
        condition = InboxEvent.id > self._last
        if self._gaps or self._sought:
            looked_for = list(self._gaps.keys() | self._sought.keys())
            condition = or_(condition, InboxEvent.id.in_(looked_for))
        with self.db.snapshot() as s:  # a read: on SQLite, no write lock taken
            rows = s.scalars(
                select(InboxEvent).where(condition).order_by(InboxEvent.id).limit(BATCH)
            )
            records = [EventRecord.from_row(row) for row in rows]
        now = time.monotonic()
        found: list[tuple[EventRecord, bool]] = []
        for record in records:
            sought = self._sought.pop(record.id, None) is not None
            if self._gaps.pop(record.id, None) is not None:
                sought = False  # a late row: every stream of its organization lacks it
            elif record.id > self._last:
                sought = False
                for missing in range(max(self._last + 1, record.id - MAX_GAPS), record.id):
                    self._gaps[missing] = now
                self._last = record.id
            found.append((record, sought))
        for gap, since in list(self._gaps.items()):
            if now - since > GAP_SECONDS or len(self._gaps) > MAX_GAPS:
                del self._gaps[gap]
        if records or len(self._gaps) != gaps_before:
            self.open_gaps = tuple(sorted(self._gaps))
        return found
