"""The outbox's acker: records delivery outcomes in batches, fenced by lease token.

Acks pushed while a write is under way wait for the next one, so a busy worker pays one
group transaction for hundreds of outcomes; a short pause after the first ack of a
burst gathers the rest of it. Large backlogs are split into chunks that are submitted
together (so they share the next group commit) and kept to a size the statements
handle well.

A write goes the fast way (``OutboxStore.ack``: the fence in each UPDATE's WHERE
clause); if a lease was lost meanwhile, again with the leases read first; if it fails,
each ack on its own, so one bad ack (say, a result the database cannot store) does not
hold up the others. An ack that cannot be written leaves its message leased: it is
delivered again when the lease expires (at-least-once).

A write that fails because the database is unavailable (down, unreachable, full) says
nothing about the acks: they are kept and written again, after a pause doubling from
``RETRY_FIRST_SECONDS`` to ``RETRY_MAX_SECONDS``, until the database is back -- so a
message delivered during an outage is not delivered again after it. An ack whose lease
expires meanwhile is dropped after a failed write (the fence would reject it anyway: the
message is claimed again). The log has a line when such an outage begins and one when it
ends, not one per message; when the drops leave the acker nothing to write, its outage
ends there (quietly: whether the database is back is not known), so it neither stays
"in outage" until the next write long after the database came back nor blames later
drops or the time since then on it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from ..kernel.redaction import get_logger
from ..store import OutageLog, database_unavailable, utcnow
from ..store.group_commit import GroupCommitter
from .outbox_store import Ack, AckReport, LeasesChanged, OutboxStore

log = get_logger(__name__)
COALESCE_SECONDS = 0.005
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0

Written = Callable[[list[Ack], list[AckReport]], None]


class Acker:
    def __init__(
        self, store: OutboxStore, committer: GroupCommitter, chunk: int, on_written: Written
    ) -> None:
        self.store = store
        self.committer = committer
        self.chunk = chunk
        self.on_written = on_written  # (acks, their reports) after each write
        self._acks: list[Ack] = []
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._writing = False
        self._outage = OutageLog(log, "acks of deliveries are kept and written again")
        self._pause = 0.0  # before writing again, while the database is unavailable

    def start(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="jackfield-outbox-acks")

    async def stop(self, timeout: float) -> None:
        """Write what was pushed (for up to ``timeout`` seconds), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._acks or self._writing) and loop.time() < deadline:
            if self._ready is not None:
                self._ready.set()
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = self._ready = None

    def take(self) -> list[Ack]:
        """The acks not written yet, which the caller writes instead."""
        acks, self._acks = self._acks, []
        return acks

    def push(self, ack: Ack) -> None:
        self._acks.append(ack)
        if self._ready is not None:
            self._ready.set()

    async def _loop(self) -> None:
        assert self._ready is not None
        while True:
            await self._ready.wait()
            await asyncio.sleep(COALESCE_SECONDS)  # gather the acks of this burst
            self._ready.clear()
            while self._acks:
                acks, self._acks = self._acks, []
                chunks = [acks[i : i + self.chunk] for i in range(0, len(acks), self.chunk)]
                self._writing = True
                try:
                    written = await asyncio.gather(*(self._write(chunk) for chunk in chunks))
                finally:
                    self._writing = False
                kept = [ack for _, chunk_kept in written for ack in chunk_kept]
                if kept:
                    waiting = {id(ack) for ack in kept}
                    acks = [ack for ack in acks if id(ack) not in waiting]
                if acks:
                    self.on_written(acks, [report for report, _ in written])
                if kept:
                    kept = self._drop_expired(kept)
                    if not kept and not self._acks:  # nothing waits for the database now
                        self._pause = 0.0
                        self._outage.forget()
                if kept:  # the database is unavailable: try again after a pause
                    self._acks[:0] = kept
                    self._pause = min(RETRY_MAX_SECONDS, max(RETRY_FIRST_SECONDS, 2 * self._pause))
                    await asyncio.sleep(self._pause)
                elif self._outage.ongoing and acks:
                    self._pause = 0.0
                    self._outage.recovered()

    def _drop_expired(self, acks: list[Ack]) -> list[Ack]:
        """``acks`` (kept after a write the database did not take) without those whose
        lease has expired (reported as rejected, as the fence would have them). The log
        says what becomes of their messages: a delivery's outcome lost means it is made
        again; a give-back lost (a message never started) means it is claimed again."""
        now = utcnow()
        expired = [ack for ack in acks if ack.claimed.lease_expires_at <= now]
        if not expired:
            return acks
        released = sum(ack.kind == "release" for ack in expired)
        if len(expired) > released:
            log.warning(
                "%d outcomes of deliveries dropped: their leases expired while the database"
                " was unavailable (those messages are delivered again)",
                len(expired) - released,
            )
        if released:
            log.warning(
                "%d give-backs dropped: the leases of those messages (none of them started)"
                " expired while the database was unavailable; they are claimed again",
                released,
            )
        self.on_written(expired, [AckReport(rejected=expired)])
        return [ack for ack in acks if ack.claimed.lease_expires_at > now]

    async def _write(self, batch: list[Ack]) -> tuple[AckReport, list[Ack]]:
        """Write ``batch``: its report, and the acks kept for later because the database
        is unavailable."""
        try:
            try:
                report = await self.committer.run(functools.partial(self.store.ack, batch))
            except LeasesChanged:
                careful = functools.partial(self.store.ack, batch, careful=True)
                report = await self.committer.run(careful)
        except SQLAlchemyError as exc:
            if database_unavailable(exc):
                self._outage.failed(exc)
                return AckReport(), batch
            log.warning("acknowledging %d messages failed (%s); one by one", len(batch), exc)
            report = AckReport()
            for i, one in enumerate(batch):
                try:
                    single = await self.committer.run(
                        functools.partial(self.store.ack, [one], careful=True)
                    )
                except SQLAlchemyError as error:
                    if database_unavailable(error):
                        self._outage.failed(error)
                        self._log_rejected(report)
                        return report, batch[i:]
                    log.error("could not record %s: %s", one.claimed.envelope_id, error)
                    continue
                report.applied += single.applied
                report.rejected += single.rejected
                report.gone += single.gone
                report.events_added += single.events_added
        self._log_rejected(report)
        return report, []

    @staticmethod
    def _log_rejected(report: AckReport) -> None:
        gone = {id(ack) for ack in report.gone}
        for ack in report.rejected:
            if id(ack) in gone:
                why = "the message was deleted with its connector"
            else:
                why = "its lease expired and was taken over"
            log.info("ack of %s rejected: %s", ack.claimed.envelope_id, why)
