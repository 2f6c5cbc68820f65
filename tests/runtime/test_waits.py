"""The runtime's loops stop when asked, even right after a wake-up.

On Python 3.11 ``asyncio.wait_for(event.wait(), timeout)`` loses a cancellation that
arrives just as the event is set, and every loop of the runtime slept that way: a stop
right after a wake-up (a commit, then shutdown) could wait for ever. This hung the suite
once (the event-router test of two routers) before it was found.
"""

from __future__ import annotations

import asyncio

from jackfield.runtime.events import EventRouter
from jackfield.runtime.waits import wait_until_set


async def test_wait_until_set_says_whether_it_was_woken():
    event = asyncio.Event()
    assert await wait_until_set(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_until_set(event, 5) is True


async def test_a_loop_woken_and_cancelled_at_once_ends():
    async def loop(event):
        while True:
            await wait_until_set(event, 60)
            event.clear()

    for _ in range(50):
        event = asyncio.Event()
        task = asyncio.create_task(loop(event))
        await asyncio.sleep(0)  # the loop waits
        event.set()  # woken ...
        task.cancel()  # ... and stopped before it ran again
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the cancellation was lost: the loop goes on"
        task.cancel()  # (ends it when the assertion above failed)


async def test_an_event_router_woken_just_before_stop_stops(jf):
    router = EventRouter(jf, poll_interval=60)  # only a wake-up or a stop ends its wait
    router.on("*")(lambda event: None)
    for _ in range(10):
        await router.start()
        await asyncio.sleep(0.05)  # it found nothing to dispatch and waits
        router.wake()
        async with asyncio.timeout(5):  # for ever before
            await router.stop()
