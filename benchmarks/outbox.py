"""Outbox throughput: enqueue + deliver to ``echo`` vs SQLite's raw batched-insert rate.

Both sides write to the same table (``outbox_messages`` as the migrations create it,
with its indexes), on SQLite with the same pragmas and durability Jackfield uses (WAL,
``synchronous=FULL``):

* **raw**: ``executemany`` INSERTs in transactions of ``outbox_batch_size`` rows, the
  rows prepared before the clock starts -- the database's own limit;
* **outbox**: ``N`` sends from concurrent producers (``OutboxService.send_async``, the
  path API requests and ``jf.send`` take), group-committed, claimed in batches under a
  lease (or, while the worker has room, handed to it under its lease as they are
  inserted), delivered by ``echo`` (which loops each message back as an inbound event),
  acknowledged in batches with the loopback events committed in the same transaction.
  The clock stops when the last message is acknowledged as delivered.

Every message is checked afterwards: N delivered rows, N inbox events.

Run: ``python -m benchmarks outbox`` (or ``make bench``). Environment:
``JACKFIELD_BENCH_MESSAGES`` (default 20000).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ulid import ULID

TARGET = 0.3


def _jackfield(directory: Path) -> Any:
    from jackfield.app import Jackfield
    from jackfield.settings import Settings

    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    settings = Settings(
        database_url=f"sqlite:///{directory / 'jackfield.db'}",
        data_dir=directory / "data",
        secret_key=key,
    )
    return Jackfield(settings=settings)


def _echo_connector(jf: Any) -> str:
    from jackfield.service import Principal, Role

    org = jf.accounts.create_org("bench")["id"]
    who = Principal(org, "bench", Role.ADMIN)
    created = jf.connectors.create(who, name="echo", category="messaging", provider_type="echo")
    jf.connectors.test(who, created["id"])
    jf.connectors.set_enabled(who, created["id"], True)
    return str(created["id"])


def raw_insert_rate(count: int, batch: int) -> float:
    """Rows per second of plain ``executemany`` into a migrated ``outbox_messages``."""
    with tempfile.TemporaryDirectory() as tmp:
        jf = _jackfield(Path(tmp))
        connector_id = _echo_connector(jf)
        org = jf.accounts.list_orgs()[0]["id"]
        path = jf.db.engine.url.database
        jf.close()
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = [
            (
                str(ULID()),
                connector_id,
                org,
                "",
                json.dumps({"text": f"message {i}"}),
                "pending",
                0,
                now,
                now,
                now,
            )
            for i in range(count)
        ]
        conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        sql = (
            "INSERT INTO outbox_messages (envelope_id, connector_id, organization_id,"
            " operation, payload, state, attempts, next_attempt_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        started = time.perf_counter()
        for start in range(0, count, batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows[start : start + batch])
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
        return count / elapsed


async def _flow(jf: Any, connector_id: str, count: int) -> tuple[float, float]:
    outbox, delivery = jf.runtime.outbox, jf.runtime.delivery
    await jf.start()
    try:
        started = time.perf_counter()
        futures = [
            outbox.send_async(None, connector_id, {"text": f"message {i}"}) for i in range(count)
        ]
        await asyncio.to_thread(concurrent.futures.wait, futures)
        for future in futures:
            future.result()  # raises if a send failed
        enqueued = time.perf_counter() - started
        while delivery.stats.delivered < count:
            await asyncio.sleep(0.002)
        total = time.perf_counter() - started
    finally:
        await jf.stop()
    return count / enqueued, count / total


def outbox_rate(count: int) -> tuple[float, float, int]:
    """(enqueue rate, enqueue+deliver rate, batch size) through the real runtime."""
    from sqlalchemy import func, select

    from jackfield.store.models_inbound import InboxEvent
    from jackfield.store.models_outbox import OutboxMessage

    with tempfile.TemporaryDirectory() as tmp:
        jf = _jackfield(Path(tmp))
        try:
            connector_id = _echo_connector(jf)
            enqueue, flow = asyncio.run(_flow(jf, connector_id, count))
            with jf.db.transaction() as s:
                delivered = s.scalar(select(func.count()).where(OutboxMessage.state == "delivered"))
                events = s.scalar(select(func.count()).select_from(InboxEvent))
            if (delivered, events) != (count, count):
                raise AssertionError(f"{delivered} delivered, {events} events of {count}")
            return enqueue, flow, jf.settings.outbox_batch_size
        finally:
            jf.close()


def main() -> None:
    count = int(os.environ.get("JACKFIELD_BENCH_MESSAGES", "20000"))
    enqueue, flow, batch = outbox_rate(count)
    raw = raw_insert_rate(count, batch)
    print(f"outbox: {count} messages to echo, SQLite WAL synchronous=FULL, batch {batch}")
    print(f"  raw executemany insert    {raw:10.0f} rows/s")
    print(f"  outbox enqueue only       {enqueue:10.0f} msg/s")
    print(
        f"  outbox enqueue + deliver  {flow:10.0f} msg/s   (all {count} delivered, one "
        "loopback event each)"
    )
    print(f"  ratio {flow / raw:.3f} (target >= {TARGET})")


if __name__ == "__main__":
    main()
