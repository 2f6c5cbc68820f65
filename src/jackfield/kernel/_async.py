"""Call provider methods that may be sync or async, without blocking an event loop."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from types import FunctionType, MethodType
from typing import Any


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
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def call_sync(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn(*args)`` from synchronous code; an async ``fn`` runs on a private loop.

    Must not be called from inside a running event loop (the service layer is sync and
    is reached from worker threads).
    """
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        awaitable = result

        async def _wait() -> Any:
            return await awaitable

        return asyncio.run(_wait())
    return result
