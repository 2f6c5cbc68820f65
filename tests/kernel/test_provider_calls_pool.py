"""The pool provider calls run in (``kernel._async.DaemonThreadPool``): an idle thread
holds nothing of the call it ran, so a big answer (an object read from storage, say) is
freed once its caller is done with it."""

from __future__ import annotations

import gc
import threading
import time
import weakref

from jackfield.kernel._async import DaemonThreadPool


class Blob:
    """Stands for a large answer."""


def test_an_idle_worker_keeps_no_answer_alive():
    pool = DaemonThreadPool(max_workers=1, thread_name_prefix="test-pool")
    future = pool.submit(Blob)
    blob = future.result(5)
    gone = weakref.ref(blob)
    time.sleep(0.05)  # the worker is idle again
    del blob, future
    gc.collect()
    assert gone() is None


def test_at_most_max_workers_run_at_once_and_every_call_ends():
    pool = DaemonThreadPool(max_workers=4, thread_name_prefix="test-pool")
    lock, running, most = threading.Lock(), [0], [0]

    def work(n: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.001)
        with lock:
            running[0] -= 1
        return n

    futures = [pool.submit(work, n) for n in range(200)]
    assert [f.result(10) for f in futures] == list(range(200))
    assert most[0] <= 4 and len(pool._threads) <= 4
    assert all(t.daemon for t in pool._threads)


def test_a_call_cancelled_while_queued_never_runs():
    pool = DaemonThreadPool(max_workers=1, thread_name_prefix="test-pool")
    gate, ran = threading.Event(), []
    busy = pool.submit(gate.wait, 5)
    queued = pool.submit(ran.append, 1)
    assert queued.cancel()
    gate.set()
    assert busy.result(5) is True
    assert pool.submit(lambda: 2).result(5) == 2 and ran == []
