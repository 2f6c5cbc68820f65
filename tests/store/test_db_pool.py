"""Consecutive SQLite write transactions go through one pooled connection, whose page
cache then stays valid, instead of taking turns between the pool's connections (each
would drop its cache, the other having written since)."""

from __future__ import annotations

import threading

from jackfield.store.db import Database


def test_sqlite_writes_reuse_the_last_connection(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        with db.transaction() as s:
            s.connection().exec_driver_sql("CREATE TABLE t (x INTEGER)")
        held = threading.Event()
        release = threading.Event()

        def reader() -> None:  # holds a second connection while the first is in use
            with db.snapshot() as s:
                s.connection().exec_driver_sql("SELECT count(*) FROM t").all()
                held.set()
                release.wait(10)

        with db.transaction() as s:
            thread = threading.Thread(target=reader)
            thread.start()
            assert held.wait(10)
            s.connection().exec_driver_sql("INSERT INTO t VALUES (1)")
        release.set()
        thread.join(10)
        # two connections idle in the pool now: consecutive writes keep taking the same
        # one (the oldest-first default alternated between them)
        used = set()
        for _ in range(3):
            with db.transaction() as s:
                s.connection().exec_driver_sql("INSERT INTO t VALUES (2)")
                used.add(id(s.connection().connection.dbapi_connection))
            with db.driver_transaction() as cursor:
                cursor.execute("INSERT INTO t VALUES (3)")
                used.add(id(cursor.cursor.connection))
        assert len(used) == 1
    finally:
        db.dispose()
