"""Call provider methods that may be sync or async, without blocking an event loop."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from types import FunctionType, MethodType
from typing import Any


class DaemonThreadPool(Executor):
    """An executor of at most ``max_workers`` daemon threads, started as work arrives.

    For calls into provider code, which may never return (an HTTP call without a
    timeout). ``ThreadPoolExecutor``'s threads are joined when the interpreter exits, so
    one such call kept the process alive for good: ``jackfield connectors test`` printed
    its timeout and never exited, an embedded application never ended after
    ``jf.close()``. A daemon thread is abandoned at exit instead -- the call it held was
    given up already (a test past its deadline, a poll of a stopped unit).
    """

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._idle = threading.Semaphore(0)  # one release per worker waiting for work
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._numbers = itertools.count()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            future: Future[Any] = Future()
            self._work.put((future, functools.partial(fn, *args, **kwargs)))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                name = f"{self._prefix}_{next(self._numbers)}"
                thread = threading.Thread(target=self._run, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            future, call = item
            if future.set_running_or_notify_cancel():
                try:  # (its answer held by no local: only the future keeps it)
                    future.set_result(call())
                except BaseException as exc:  # noqa: BLE001 - the caller sees it, as from ThreadPoolExecutor
                    future.set_exception(exc)
            del item, future, call  # nothing of a finished call stays alive while idle
            self._idle.release()


#: Sync provider and handler calls run here, not in the loop's default executor: that
#: one (a handful of threads) also does the runtime's own database work, and a provider
#: call that never returns (an HTTP call without a timeout) holds its thread for good --
#: a few of them would stop every unit of the node, leases and heartbeats included.
#: Its threads are daemons (``DaemonThreadPool``): such a call never holds the exit.
PROVIDER_CALLS = DaemonThreadPool(max_workers=64, thread_name_prefix="jackfield-provider")


def is_async(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, answered from the code flags for plain functions
    and bound methods (a few times faster: every outbox delivery asks it)."""
    kind = type(fn)
    if kind is MethodType:
        fn = fn.__func__  # type: ignore[attr-defined]
        kind = type(fn)
    if kind is FunctionType:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


STOPS = (SystemExit, KeyboardInterrupt)
"""What provider code must not raise: asyncio lets these two through every task up to the
event loop, which ends -- ``jackfield serve`` or the embedding application with it."""


def provider_stopped(exc: BaseException) -> RuntimeError:
    """A provider's ``SystemExit`` / ``KeyboardInterrupt`` as the bug it is: an error,
    counted like any other (a crash of its unit, a failed handler), raised ``from exc``."""
    return RuntimeError(f"the provider raised {exc!r}, which would stop the process")


def guarded(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args)`` with ``STOPS`` turned into ``provider_stopped`` (in a worker thread)."""
    try:
        return fn(*args, **kwargs)
    except STOPS as exc:
        raise provider_stopped(exc) from exc


async def call_async(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Await ``fn(*args)``; a sync ``fn`` runs in a worker thread so the loop never blocks.
    A ``SystemExit`` or ``KeyboardInterrupt`` of ``fn`` comes out as ``provider_stopped``."""
    try:
        if is_async(fn):
            return await fn(*args, **kwargs)
        call = functools.partial(contextvars.copy_context().run, guarded, fn, *args, **kwargs)
        result = await asyncio.get_running_loop().run_in_executor(PROVIDER_CALLS, call)
        if inspect.isawaitable(result):
            return await result
        return result
    except STOPS as exc:
        raise provider_stopped(exc) from exc


def call_sync(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn(*args)`` from synchronous code; an async ``fn`` runs on a private loop.

    The service layer is sync and is mostly reached from worker threads. Called on a
    thread whose event loop is running (an embedding application's ``async def``), the
    private loop runs in a thread of its own: ``asyncio.run`` refuses to nest.
    """
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        awaitable = result

        async def _wait() -> Any:
            return await awaitable

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop here: the usual case
            return asyncio.run(_wait())
        with ThreadPoolExecutor(1, thread_name_prefix="jackfield-call-sync") as own:
            return own.submit(asyncio.run, _wait()).result()
    return result
