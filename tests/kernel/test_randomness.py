"""Random bytes for ids: never repeated within a process, across threads or after a
fork (a child must not hand out its parent's unused bytes)."""

from __future__ import annotations

import os
import threading

from jackfield.kernel.randomness import random_bytes


def test_bytes_are_never_handed_out_twice_across_blocks_and_threads():
    seen: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [random_bytes(10) for _ in range(2000)]  # several 4 KiB blocks
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8000 and len(set(seen)) == 8000
    assert all(len(b) == 10 for b in seen)


def test_a_forked_child_draws_other_bytes_than_its_parent():
    random_bytes(10)  # the parent has a block with unused bytes in it
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes, then leave at once
        os.write(writer, random_bytes(16))
        os._exit(0)
    os.close(writer)
    child = os.read(reader, 16)
    os.close(reader)
    os.waitpid(pid, 0)
    assert len(child) == 16
    assert random_bytes(16) != child
