"""Call provider methods that may be sync or async, without blocking an event loop."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FunctionType, MethodType
from typing import Any

#: Sync provider and handler calls run here, not in the loop's default executor: that
#: one (a handful of threads) also does the runtime's own database work, and a provider
#: call that never returns (an HTTP call without a timeout) holds its thread for good --
#: a few of them would stop every unit of the node, leases and heartbeats included.
PROVIDER_CALLS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="jackfield-provider")


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


async def call_async(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Await ``fn(*args)``; a sync ``fn`` runs in a worker thread so the loop never blocks."""
    if is_async(fn):
        return await fn(*args, **kwargs)
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    result = await asyncio.get_running_loop().run_in_executor(PROVIDER_CALLS, call)
    if inspect.isawaitable(result):
        return await result
    return result


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
