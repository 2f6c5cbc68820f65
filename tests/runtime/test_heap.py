"""While the runtime (or the app) runs, the start-up heap is out of the cycle collector's
way; once the last of them stops, cyclic garbage from start-up is collected again."""

from __future__ import annotations

import gc
import weakref

from jackfield.api import create_app
from jackfield.runtime import heap
from jackfield.testing import LiveServer


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cycle collector can free it


async def test_the_runtime_freezes_the_start_up_heap_until_it_stops(jf):
    node = _Node()
    ref = weakref.ref(node)
    await jf.start()
    try:
        del node
        gc.collect()
        assert ref() is not None  # built before start: skipped by cycle detection
    finally:
        await jf.stop()
    gc.collect()
    assert ref() is None  # collected once the runtime stopped


def test_the_heap_stays_frozen_until_the_last_holder_thaws():
    assert heap.holders() == 0, "a runtime or app left running by an earlier test"
    node = _Node()
    ref = weakref.ref(node)
    heap.freeze()  # a first holder (the app)
    heap.freeze()  # a second one (the runtime inside it)
    del node
    heap.thaw()
    gc.collect()
    assert ref() is not None
    heap.thaw()
    gc.collect()
    assert ref() is None
    heap.thaw()  # a thaw without a freeze (an app whose start-up failed) changes nothing
    assert (heap.holders(), gc.get_freeze_count()) == (0, 0)


def test_a_served_app_holds_the_heap_for_itself_and_its_runtime(jf):
    with LiveServer(create_app(jf)):
        assert heap.holders() == 2  # the app's webhook fast path and the runtime
        assert gc.get_freeze_count() > 10_000  # the start-up heap: modules, app, registry
    assert (heap.holders(), gc.get_freeze_count()) == (0, 0)
