"""Outbox throughput: enqueue + deliver to ``echo`` vs SQLite's raw batched-insert rate.

Everything writes to ``outbox_messages`` as the migrations create it (with its indexes),
on SQLite with the pragmas and durability Jackfield uses (WAL, ``synchronous=FULL``):

* **raw**: INSERTs in transactions of ``outbox_batch_size`` rows, the rows prepared
  before the clock starts -- the database's own limit, the baseline. Measured two ways:
  ``executemany`` (one statement step per row) and multi-row ``INSERT ... VALUES
  (...), (...)`` (one step per batch, as Jackfield writes its batches, and about 1.35x
  faster here). The faster of the two is the baseline the target is held against;
* **sustained**: the rate the outbox keeps up: a producer sends with ``send_many`` in
  chunks of ``outbox_batch_size`` while at most ``outbox_max_in_flight`` of its messages
  are undelivered (a closed loop, as the webhook benchmark's 64 connections are), so
  new messages go straight to the worker as a running system's would. Each message is
  committed, delivered by ``echo`` (which loops it back as an inbound event) and
  acknowledged with its loopback event in the same transaction. The clock stops when
  the last one is acknowledged. This is the figure held against the target;
* **burst**: ``N`` single sends at once (``send_async``, the path API requests take),
  so most of them queue and are claimed in batches -- a backlog draining;
* **floor**: the three writes every message costs (insert, mark delivered, insert its
  loopback event), from one thread with plain ``sqlite3`` and no framework at all, in
  the same batches and with the statements Jackfield uses (multi-row ``INSERT``,
  ``UPDATE ... FROM (VALUES ...)``): what any outbox with these semantics could reach
  here.

Every Jackfield run is checked afterwards: ``N`` delivered rows, ``N`` inbox events. The
machine is noisy, so the sides take turns for ``JACKFIELD_BENCH_ROUNDS`` rounds and the
medians are compared.

Run: ``python -m benchmarks outbox`` (or ``make bench``). Environment:
``JACKFIELD_BENCH_MESSAGES`` (default 20000), ``JACKFIELD_BENCH_ROUNDS`` (5: one round's
ratio varies by about ±20% on a shared machine).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def _echo_connector(jf: Any) -> tuple[str, str]:
    """(connector id, organization id) of an active echo connector."""
    from jackfield.service import Principal, Role

    org = jf.accounts.create_org("bench")["id"]
    who = Principal(org, "bench", Role.ADMIN)
    created = jf.connectors.create(who, name="echo", category="messaging", provider_type="echo")
    jf.connectors.test(who, created["id"])
    jf.connectors.set_enabled(who, created["id"], True)
    return str(created["id"]), org


def _database(directory: Path) -> tuple[str, str, str]:
    """A migrated database with an echo connector: (path, connector id, organization)."""
    jf = _jackfield(directory)
    try:
        connector_id, org = _echo_connector(jf)
        return str(jf.db.engine.url.database), connector_id, org
    finally:
        jf.close()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _ulids(count: int) -> list[str]:
    from ulid import ULID

    return [str(ULID()) for _ in range(count)]


OUTBOX_COLUMNS = (
    "envelope_id, connector_id, organization_id, operation, payload, state, attempts,"
    " next_attempt_at, lease_token, lease_expires_at, created_at, updated_at"
)
EVENT_COLUMNS = (
    "connector_id, organization_id, event_id, event_type, payload, source, occurred_at, received_at"
)


def _insert_sql(table: str, columns: str, rows: int, tail: str = "") -> str:
    """``INSERT`` of ``rows`` rows of ``columns`` in one statement (``rows == 1``: the
    statement an ``executemany`` repeats)."""
    one = "(" + ", ".join("?" * len(columns.split(","))) + ")"
    return f"INSERT INTO {table} ({columns}) VALUES {', '.join([one] * rows)}{tail}"


def _outbox_insert(rows: int) -> str:
    return _insert_sql("outbox_messages", OUTBOX_COLUMNS, rows)


def _flat(rows: list[tuple[Any, ...]]) -> list[Any]:
    return [value for row in rows for value in row]


def raw_insert_rate(count: int, batch: int, *, multi_row: bool) -> float:
    """Rows per second of plain INSERTs into a migrated ``outbox_messages``: an
    ``executemany`` per batch, or (``multi_row``) one multi-row statement per batch."""
    with tempfile.TemporaryDirectory() as tmp:
        path, connector_id, org = _database(Path(tmp))
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows = [
            (
                e,
                connector_id,
                org,
                "",
                f'{{"text":"message {i}"}}',
                "pending",
                0,
                now,
                None,
                None,
                now,
                now,
            )
            for i, e in enumerate(_ulids(count))
        ]
        single = _outbox_insert(1)
        conn = _connect(path)
        started = time.perf_counter()
        for start in range(0, count, batch):
            chunk = rows[start : start + batch]
            conn.execute("BEGIN IMMEDIATE")
            if multi_row:
                conn.execute(_outbox_insert(len(chunk)), _flat(chunk))
            else:
                conn.executemany(single, chunk)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
        return count / elapsed


def _mark_sql(rows: int) -> str:
    """Jackfield's fenced ``delivered`` ack for ``rows`` messages of one lease."""
    return (
        "UPDATE outbox_messages SET state = 'delivered', lease_token = NULL,"
        " lease_expires_at = NULL, updated_at = ?, result = v.column2,"
        " last_error = NULL, error_class = NULL"
        f" FROM (VALUES {', '.join(['(?, ?)'] * rows)}) AS v"
        " WHERE outbox_messages.connector_id = ? AND outbox_messages.envelope_id = v.column1"
        " AND outbox_messages.lease_token = ? AND outbox_messages.state = 'in_flight'"
        " AND outbox_messages.lease_expires_at > ?"
    )


def floor_rate(count: int, batch: int) -> float:
    """Messages per second of the three writes each costs, without any framework: per
    batch, insert (committed), then mark delivered + insert the loopback events
    (committed), each one statement. Payloads and results are made inside the clock, as
    a real system's."""
    import orjson

    with tempfile.TemporaryDirectory() as tmp:
        path, cid, org = _database(Path(tmp))
        conn = _connect(path)
        ids = _ulids(count)
        started = time.perf_counter()
        for start in range(0, count, batch):
            now = datetime.now(UTC)
            stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
            expires = (now + timedelta(seconds=60)).strftime("%Y-%m-%d %H:%M:%S.%f")
            token = str(uuid.uuid4())
            chunk = ids[start : start + batch]
            payloads = [orjson.dumps({"text": f"message {start + i}"}) for i in range(len(chunk))]
            messages = [
                (e, cid, org, "", p.decode(), "in_flight", 1, expires, token, expires, stamp, stamp)
                for e, p in zip(chunk, payloads, strict=True)
            ]
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_outbox_insert(len(chunk)), _flat(messages))
            conn.execute("COMMIT")
            results: list[Any] = []
            events = []
            randomness = os.urandom(16 * len(chunk)).hex()
            for i, (e, p) in enumerate(zip(chunk, payloads, strict=True)):
                result = {"message_id": f"echo-{randomness[32 * i : 32 * i + 32]}", "channel": None}
                loop_back = {
                    **orjson.loads(p),
                    "envelope_id": e,
                    "message_id": result["message_id"],
                }
                results += (e, orjson.dumps(result).decode())
                events.append(
                    (
                        cid,
                        org,
                        f"echo:{e}",
                        "message.received",
                        orjson.dumps(loop_back).decode(),
                        "loopback",
                        None,
                        stamp,
                    )
                )
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_mark_sql(len(chunk)), [stamp, *results, cid, token, stamp])
            conn.execute(
                _insert_sql("inbox_events", EVENT_COLUMNS, len(events), " ON CONFLICT DO NOTHING"),
                _flat(events),
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
        return count / elapsed


async def _sustained(jf: Any, connector_id: str, count: int) -> None:
    outbox, stats = jf.runtime.outbox, jf.runtime.delivery.stats
    chunk, window = jf.settings.outbox_batch_size, jf.settings.outbox_max_in_flight
    sent, pending = 0, []
    while sent < count:
        if sent + chunk - stats.delivered > window:
            await asyncio.sleep(0.0005)  # the window is full: wait for deliveries
            continue
        size = min(chunk, count - sent)
        payloads = [{"text": f"message {i}"} for i in range(sent, sent + size)]
        pending.append(outbox.send_many_async(None, connector_id, payloads))
        sent += size
        await asyncio.sleep(0)
    for future in pending:
        future.result()  # raises if a send failed


async def _burst(jf: Any, connector_id: str, count: int) -> None:
    outbox = jf.runtime.outbox
    futures = [
        outbox.send_async(None, connector_id, {"text": f"message {i}"}) for i in range(count)
    ]
    await asyncio.to_thread(concurrent.futures.wait, futures)
    for future in futures:
        future.result()


Producer = Callable[[Any, str, int], Any]


def outbox_rate(count: int, producer: Producer) -> float:
    """Messages per second from the first send until the last one is acknowledged."""
    from sqlalchemy import func, select

    from jackfield.store.models_inbound import InboxEvent
    from jackfield.store.models_outbox import OutboxMessage

    async def flow(jf: Any, connector_id: str) -> float:
        await jf.start()
        try:
            started = time.perf_counter()
            await producer(jf, connector_id, count)
            while jf.runtime.delivery.stats.delivered < count:
                await asyncio.sleep(0.001)
            return count / (time.perf_counter() - started)
        finally:
            await jf.stop()

    with tempfile.TemporaryDirectory() as tmp:
        jf = _jackfield(Path(tmp))
        try:
            connector_id, _ = _echo_connector(jf)
            rate = asyncio.run(flow(jf, connector_id))
            with jf.db.transaction() as s:
                delivered = s.scalar(select(func.count()).where(OutboxMessage.state == "delivered"))
                events = s.scalar(select(func.count()).select_from(InboxEvent))
            if (delivered, events) != (count, count):
                raise AssertionError(f"{delivered} delivered, {events} events of {count}")
            return rate
        finally:
            jf.close()


def main() -> None:
    count = int(os.environ.get("JACKFIELD_BENCH_MESSAGES", "20000"))
    rounds = int(os.environ.get("JACKFIELD_BENCH_ROUNDS", "5"))
    from jackfield.settings import Settings

    batch = Settings.model_fields["outbox_batch_size"].default
    runs: dict[str, list[float]] = {
        "multi_row": [],
        "executemany": [],
        "sustained": [],
        "burst": [],
        "floor": [],
    }
    for _ in range(rounds):  # the sides take turns: noise hits them alike
        runs["multi_row"].append(raw_insert_rate(count, batch, multi_row=True))
        runs["executemany"].append(raw_insert_rate(count, batch, multi_row=False))
        runs["sustained"].append(outbox_rate(count, _sustained))
        runs["burst"].append(outbox_rate(count, _burst))
        runs["floor"].append(floor_rate(count, batch))
    # the baseline is the database's faster batched insert, round by round
    runs["raw"] = [max(p) for p in zip(runs["multi_row"], runs["executemany"], strict=True)]
    median = {name: statistics.median(rates) for name, rates in runs.items()}
    raw = median["raw"]
    print(
        f"outbox: {count} messages to echo, SQLite WAL synchronous=FULL, batch {batch}, "
        f"median of {rounds} rounds"
    )
    print(f"  raw insert (the faster below) {raw:8.0f} rows/s")
    print(f"    multi-row VALUES            {median['multi_row']:8.0f} rows/s")
    print(f"    executemany                 {median['executemany']:8.0f} rows/s")
    for name, label in (
        ("sustained", "outbox sustained (send_many)"),
        ("burst", "outbox burst (send_async)"),
        ("floor", "floor: 3 writes, no framework"),
    ):
        rate = median[name]
        print(f"  {label:30s} {rate:8.0f} msg/s   {rate / raw:.3f}x raw")
    print(
        f"  ratio {median['sustained'] / raw:.3f} (target >= {TARGET});"
        f" {median['sustained'] / median['executemany']:.3f} against executemany;"
        f" sustained is {median['sustained'] / median['floor']:.0%} of the floor; per round:"
    )
    for i in range(rounds):
        print(
            "    "
            + ", ".join(f"{name} {runs[name][i]:.0f}" for name in runs)
            + f"  -> {runs['sustained'][i] / runs['raw'][i]:.3f}"
        )


if __name__ == "__main__":
    main()
