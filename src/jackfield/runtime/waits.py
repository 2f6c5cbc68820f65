"""Waiting for a wake-up or a timeout, in a way a stop can always cancel.

Every loop of the runtime (supervisor, outbox dispatcher, event router, event feed)
sleeps between rounds until woken or until a timeout. ``asyncio.wait_for`` does that,
but on Python 3.11 it loses a cancellation that arrives just as the awaited event is
set: the result wins and the loop goes on (fixed in 3.12). A wake-up right before a
stop is the common case -- a commit wakes the loop, then the process shuts down -- so
``stop()`` could wait for ever. ``asyncio.timeout`` tells its own cancellation from the
caller's, so the loops use it instead.
"""

from __future__ import annotations

import asyncio


async def wait_until_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set (``True``) or ``timeout`` seconds pass (``False``)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
