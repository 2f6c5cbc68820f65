"""Crash safety of the outbox: ``jackfield serve`` is killed with SIGKILL at ten random
moments while 2,000 messages flow to an echo connector, and restarted each time.

The client sends every message with its own ULID and retries a request until it gets
an answer, as a careful client does; the server may have committed a message whose
answer was lost, so the retry must be idempotent. In the end every envelope is
delivered, none is lost, and the inbox holds exactly one loopback event per envelope.
A final SIGTERM stops the server gracefully, leaving no message leased.
"""

from __future__ import annotations

import queue
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
from ulid import ULID

MESSAGES = 2000
KILLS = 10
SENDERS = 8


def _sender(url_of, token, connector_id, work: queue.Queue, acked: list, stop) -> None:
    """POST each envelope until the server answers 200/202 (retrying across kills)."""
    headers = {"Authorization": f"Bearer {token}"}
    http = httpx2.Client(headers=headers, timeout=10)
    try:
        while not stop.is_set():
            try:
                envelope = work.get_nowait()
            except queue.Empty:
                return
            body = {"envelope_id": envelope, "payload": {"text": f"message {envelope}"}}
            while not stop.is_set():
                try:
                    response = http.post(
                        f"{url_of()}/api/connectors/{connector_id}/messages", json=body
                    )
                except httpx2.HTTPError:
                    time.sleep(0.05)  # the server is down (killed): try again
                    continue
                assert response.status_code in (200, 202), response.text
                acked.append(envelope)
                break
    finally:
        http.close()


def _counts(db_path: Path) -> tuple[int, int, int]:
    """(delivered messages, loopback events, messages still leased)."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        delivered = conn.execute(
            "SELECT count(*) FROM outbox_messages WHERE state = 'delivered'"
        ).fetchone()[0]
        events = conn.execute(
            "SELECT count(*) FROM inbox_events WHERE source = 'loopback'"
        ).fetchone()[0]
        leased = conn.execute(
            "SELECT count(*) FROM outbox_messages WHERE lease_token IS NOT NULL"
        ).fetchone()[0]
        return delivered, events, leased
    finally:
        conn.close()


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    tmp_path: Path, serve_process: Callable[..., Any], serve_setup: Callable[..., Any]
) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    db_path = tmp_path / "jackfield.db"
    database_url = f"sqlite:///{db_path}"
    token, connector_id, env = serve_setup(
        database_url,
        tmp_path / "data",
        OUTBOX_LEASE_SECONDS="2",
        OUTBOX_POLL_SECONDS="0.2",
        SUPERVISOR_POLL_SECONDS="0.5",
    )
    server = serve_process(env, tmp_path / "serve.log")
    server.start()

    envelopes = [str(ULID()) for _ in range(MESSAGES)]
    work: queue.Queue[str] = queue.Queue()
    for envelope in envelopes:
        work.put(envelope)
    acked: list[str] = []
    stop = threading.Event()
    senders = [
        threading.Thread(
            target=_sender, args=(lambda: server.url, token, connector_id, work, acked, stop)
        )
        for _ in range(SENDERS)
    ]
    for thread in senders:
        thread.start()
    kill_points = sorted(rng.sample(range(50, MESSAGES - 50), KILLS))
    try:
        for point in kill_points:
            deadline = time.monotonic() + 60
            while len(acked) < point:
                assert time.monotonic() < deadline, f"stuck at {len(acked)} (seed {seed})"
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
            server.kill()
            server.start()
        for thread in senders:
            thread.join(120)
        assert sorted(acked) == sorted(envelopes), f"not every send was answered (seed {seed})"

        deadline = time.monotonic() + 60
        while _counts(db_path)[0] < MESSAGES:
            assert time.monotonic() < deadline, f"undelivered: {_counts(db_path)} (seed {seed})"
            time.sleep(0.2)
        # SIGTERM: a graceful stop (uvicorn re-raises the signal once it has shut down)
        assert server.terminate() in (0, -signal.SIGTERM)
        assert "runtime stopped" in server.log.read_text()
    finally:
        stop.set()
        if server.process is not None and server.process.poll() is None:
            server.kill()

    delivered, events, leased = _counts(db_path)
    assert (delivered, events, leased) == (MESSAGES, MESSAGES, 0), f"seed {seed}"
    conn = sqlite3.connect(db_path)
    try:
        stored = {row[0] for row in conn.execute("SELECT envelope_id FROM outbox_messages")}
        echoed = [row[0] for row in conn.execute("SELECT event_id FROM inbox_events")]
    finally:
        conn.close()
    assert stored == set(envelopes)  # none lost, none invented
    assert sorted(echoed) == sorted(f"echo:{e}" for e in envelopes)  # exactly one each
