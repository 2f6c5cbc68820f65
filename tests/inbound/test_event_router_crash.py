"""An application embedding Jackfield crashes mid-batch (``os._exit``, as SIGKILL or the
OOM killer would end it) and is started again on the same machine: the new process
dispatches the crashed one's events at once, not after the claim's 120 s, while the
claim of a process that still lives (its handler running on past ``stop()``) is left
alone.

The crashed applications are real processes (``python -c``) with a ``@jf.on`` handler
that notes each start and end in a file (appends survive ``os._exit``); the application
started again is this test's process, another process of the same host.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jackfield
from jackfield.runtime.events import EventRouter

from .test_event_router import commit, echo_connector, eventually, undispatched

APP = """
import asyncio, json, os, sys, threading, time
from jackfield import Jackfield

url, notes, die_at, stuck_at, pace = sys.argv[1:6]
jf = Jackfield(database_url=url)
stuck = threading.Event()

def note(what, event):
    with open(notes, "a") as f:
        f.write(json.dumps([what, event.event_id, os.getpid(), time.time()]) + "\\n")

@jf.on("tick")
def handle(event):
    note("start", event)
    if event.event_id == die_at:
        os._exit(9)
    if event.event_id == stuck_at:
        stuck.set()
        time.sleep(600)
    time.sleep(float(pace))
    note("done", event)

async def main():
    await jf.start()
    if stuck_at != "-":  # stop while the handler runs on: the process lives on
        await asyncio.to_thread(stuck.wait, 30)
        await jf.stop()
        print("stopped", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


class App:
    """An embedded Jackfield application in a process of its own."""

    def __init__(self, jf, notes: Path, die_at: str = "-", stuck_at: str = "-", pace=0.0):
        src = str(Path(jackfield.__file__).parent.parent)
        path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "PYTHONPATH": path,
            "JACKFIELD_SECRET_KEY": jf.settings.secret_key.get_secret_value(),
            "JACKFIELD_DATA_DIR": str(jf.settings.data_dir),
            "JACKFIELD_RUNTIME_SHUTDOWN_GRACE_SECONDS": "0.2",
        }
        args = [jf.settings.database_url, str(notes), die_at, stuck_at, str(pace)]
        self.process = subprocess.Popen(
            [sys.executable, "-c", APP, *args], env=env, stdout=subprocess.PIPE, text=True
        )

    def kill(self) -> None:
        """SIGKILL, and reaped (as the shell or systemd that started it does)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


async def restarted(jf) -> set[str]:
    """The application started again, in this process (another process of this host):
    the events it ran until none is left undispatched."""
    router = EventRouter(jf, poll_interval=0.05)
    ran: set[str] = set()
    router.on("tick")(lambda event: ran.add(event.event_id))
    await router.start()
    try:
        await eventually(lambda: undispatched(jf) == 0, timeout=30)
    finally:
        await router.stop()
    return ran


def read_notes(notes: Path) -> list[tuple[str, str, int, float]]:
    if not notes.exists():
        return []
    return [tuple(json.loads(line)) for line in notes.read_text().splitlines()]


async def test_a_restarted_application_dispatches_a_crashed_ones_batch_at_once(
    jf, admin, org, tmp_path
):
    """Before, the process started after the crash ran none of the crashed batch's events
    until its claim expired: 120 s without handlers after every crash."""
    connector = echo_connector(jf, admin)
    commit(jf, connector, org, *((f"t{i}", "tick") for i in range(8)))
    notes = tmp_path / "notes.jsonl"
    crashed = App(jf, notes, die_at="t3")
    try:
        assert crashed.process.wait(timeout=60) == 9  # died in t3's handler
    finally:
        crashed.kill()
    assert undispatched(jf) >= 5  # t3..t7 at least are still claimed by the dead process

    started = time.monotonic()
    ran_again = await restarted(jf)
    assert time.monotonic() - started < 10  # the claim (120 s) was not waited out
    assert {f"t{i}" for i in range(3, 8)} <= ran_again


async def test_a_live_process_keeps_its_claim_until_it_is_gone(jf, admin, org, tmp_path):
    """An application stopped while a handler still runs (past the grace) keeps its claim
    as long as the process lives: another process of this host does not run the event
    meanwhile; once the process is killed, the event is run at once."""
    connector = echo_connector(jf, admin)
    commit(jf, connector, org, ("t0", "tick"))
    notes = tmp_path / "notes.jsonl"
    stopped = App(jf, notes, stuck_at="t0")
    router = EventRouter(jf, poll_interval=0.05)
    ran: list[str] = []
    router.on("tick")(lambda event: ran.append(event.event_id))
    try:
        assert stopped.process.stdout is not None
        line = await asyncio.to_thread(stopped.process.stdout.readline)
        assert line.strip() == "stopped"  # its router stopped; t0's handler runs on
        await router.start()
        await asyncio.sleep(1.0)
        assert ran == []  # the claim of a live process is not taken
        stopped.kill()
        started = time.monotonic()
        await eventually(lambda: ran == ["t0"], timeout=30)
        assert time.monotonic() - started < 10
    finally:
        stopped.kill()
        await router.stop()
    assert undispatched(jf) == 0


async def test_a_crash_re_runs_only_the_events_finished_just_before_it(jf, admin, org, tmp_path):
    """Before, a batch's events were marked only at its end: after a crash, every event
    of the batch whose handlers had finished (up to 100) ran again. Now those finished
    more than the mark interval (0.5 s) before the crash are not run again."""
    connector = echo_connector(jf, admin)
    commit(jf, connector, org, *((f"t{i}", "tick") for i in range(12)))
    notes = tmp_path / "notes.jsonl"
    crashed = App(jf, notes, die_at="t11", pace=0.25)
    try:
        assert crashed.process.wait(timeout=60) == 9
    finally:
        crashed.kill()
    ran_again = await restarted(jf)

    noted = read_notes(notes)
    crash_time = next(t for what, eid, _, t in noted if (what, eid) == ("start", "t11"))
    finished_early = {  # by the crashed process, a second or more before it died
        eid
        for what, eid, pid, t in noted
        if what == "done" and pid == crashed.process.pid and t < crash_time - 1.0
    }
    assert len(finished_early) >= 4  # t0..t5 finished 1.25 s or more before the crash
    assert finished_early.isdisjoint(ran_again), ran_again
    assert "t11" in ran_again  # at-least-once: the event whose handler was running
