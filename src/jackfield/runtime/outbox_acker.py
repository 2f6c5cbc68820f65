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
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from ..kernel.redaction import get_logger
from ..store.group_commit import GroupCommitter
from .outbox_store import Ack, AckReport, LeasesChanged, OutboxStore

log = get_logger(__name__)
COALESCE_SECONDS = 0.005

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
                    reports = await asyncio.gather(*(self._write(chunk) for chunk in chunks))
                finally:
                    self._writing = False
                self.on_written(acks, reports)

    async def _write(self, batch: list[Ack]) -> AckReport:
        try:
            try:
                report = await self.committer.run(functools.partial(self.store.ack, batch))
            except LeasesChanged:
                careful = functools.partial(self.store.ack, batch, careful=True)
                report = await self.committer.run(careful)
        except SQLAlchemyError as exc:
            log.warning("acknowledging %d messages failed (%s); one by one", len(batch), exc)
            report = AckReport()
            for one in batch:
                try:
                    single = await self.committer.run(
                        functools.partial(self.store.ack, [one], careful=True)
                    )
                except SQLAlchemyError as error:
                    log.error("could not record %s: %s", one.claimed.envelope_id, error)
                    continue
                report.applied += single.applied
                report.rejected += single.rejected
                report.gone += single.gone
                report.events_added += single.events_added
        gone = {id(ack) for ack in report.gone}
        for ack in report.rejected:
            if id(ack) in gone:
                why = "the message was deleted with its connector"
            else:
                why = "its lease expired and was taken over"
            log.info("ack of %s rejected: %s", ack.claimed.envelope_id, why)
        return report
