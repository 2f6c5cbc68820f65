"""Group commit: many small writes from many threads share one transaction.

A durable commit costs an fsync; committing each webhook or enqueued message on its own
caps throughput at the disk's fsync rate. ``GroupCommitter.submit(fn)`` queues ``fn``
and blocks until the transaction holding it has committed; a single committer thread
runs every queued ``fn`` in one transaction, each inside a savepoint so that one failing
write (say, a unique-constraint violation) fails only its own caller. A ``fn`` may raise
to have its writes undone: only its savepoint (or, alone in a group, the transaction) is
rolled back.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..kernel.redaction import get_logger
from .db import Database

T = TypeVar("T")
log = get_logger(__name__)
_STOP = object()


class GroupCommitter:
    def __init__(self, db: Database, *, max_batch: int = 512, name: str = "group-commit") -> None:
        self.db = db
        self.max_batch = max_batch
        self.name = name
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._started = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[Session], T], timeout: float | None = 60) -> T:
        """Run ``fn(session)`` in the next group transaction; return after it committed."""
        return self.submit_async(fn).result(timeout)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """``submit`` for a coroutine: run ``fn`` in the next group transaction and
        resume once it committed, without blocking the event loop."""
        return await asyncio.wrap_future(self.submit_async(fn))

    def submit_async(self, fn: Callable[[Session], T]) -> Future[T]:
        self._ensure_started()
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future

    def close(self) -> None:
        with self._lock:
            if self._started and self._thread is not None:
                self._queue.put(_STOP)
                self._thread.join(timeout=30)
                self._started = False

    def _ensure_started(self) -> None:
        with self._lock:
            if not self._started:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
                self._started = True

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[tuple[Callable[[Session], Any], Future[Any]]]) -> None:
        if len(batch) == 1:
            self._commit_alone(*batch[0])
            return
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self.db.transaction() as session:
                for fn, future in batch:
                    if not future.set_running_or_notify_cancel():
                        continue
                    try:
                        with session.begin_nested():  # flushes (and may fail) on exit
                            value = fn(session)
                    except Exception as exc:  # noqa: BLE001 - the error goes to its caller
                        results.append((future, None, exc))
                    else:
                        results.append((future, value, None))
        except SQLAlchemyError as exc:  # the commit itself failed: nothing was written
            log.warning("group commit of %d writes failed: %s", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, value, error in results:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def _commit_alone(self, fn: Callable[[Session], Any], future: Future[Any]) -> None:
        """A group of one: no savepoint, since there is no other write to protect from
        its failure (a failing ``fn`` rolls the transaction back). Saves two statements
        per write when writers come one at a time."""
        if not future.set_running_or_notify_cancel():
            return
        try:
            with self.db.transaction() as session:
                value = fn(session)
        except Exception as exc:  # noqa: BLE001 - the error (or failed commit) goes to its caller
            future.set_exception(exc)
            return
        future.set_result(value)
