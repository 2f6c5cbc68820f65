"""A database outage: how to recognise one, and how to log one without a line per failure.

``database_unavailable(exc)`` tells an error that says the database cannot be used right
now (the server is down or unreachable, a connection was lost, the disk is full, a lock
was not granted in time) from one that says a statement was wrong. The first is waited
out -- a request answers 503 with ``Retry-After``, the runtime tries again -- the second
is a fault with a traceback.

``OutageLog`` turns the many failures of one outage into a line when it begins, a line a
minute while it lasts (with the count), and a line when it ends.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# what says the database cannot be used now; anything else is a fault (a statement that
# is wrong, a value too large, a timeout a statement ran into): answered 500, logged with
# its traceback, never waited out
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "database or disk is full",
    "unable to open database file",
    "attempt to write a readonly database",
)
# PostgreSQL SQLSTATEs: connection exceptions (08), insufficient resources (53: disk full,
# out of memory, too many connections), the server shutting down or starting (57P01-03),
# and a read-only transaction (25006: a standby after a failover)
_PG_UNAVAILABLE_CLASSES = ("08", "53")
_PG_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03", "25006")
# SQLAlchemy's code of the ``PendingRollbackError`` of a connection invalidated (lost)
# inside a transaction (https://sqlalche.me/e/20/8s2b)
_CONNECTION_LOST_IN_TRANSACTION = "8s2b"


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be used right now (not that a statement
    or a value was wrong)."""
    if isinstance(exc, PoolTimeoutError):  # no connection of the pool freed in time
        return True
    if isinstance(exc, PendingRollbackError):
        # "Can't reconnect until invalid transaction is rolled back": the connection was
        # lost inside a transaction and used again (a group commit's next write, its
        # commit). Its other kind, after a failed flush, says nothing of the database.
        return exc.code == _CONNECTION_LOST_IN_TRANSACTION
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    driver_error = exc.orig
    if type(driver_error).__module__.split(".")[0] == "sqlite3":
        text = str(driver_error).lower()
        return isinstance(exc, OperationalError) and any(m in text for m in _SQLITE_UNAVAILABLE)
    state = getattr(driver_error, "sqlstate", None)
    if state is None:  # psycopg: could not connect, or "the connection is closed"
        return isinstance(exc, OperationalError | InterfaceError)
    return state.startswith(_PG_UNAVAILABLE_CLASSES) or state in _PG_UNAVAILABLE_STATES


def outage_reason(exc: BaseException) -> str:
    """The driver's first line about ``exc`` ("connection refused", "database or disk is
    full"), without SQLAlchemy's statement and parameters."""
    driver_error = exc.orig if isinstance(exc, DBAPIError) else exc
    lines = str(driver_error).strip().splitlines()
    return f"{type(driver_error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class OutageLog:
    """Logs a database outage at its start, every ``every`` seconds while it lasts (how
    many failures it caused meanwhile) and at its end -- not once per failure.

    ``failed(exc)`` notes a failure; ``recovered()`` a success after one. Only a success
    ends an outage, and its length is counted from its first failure: against a database
    that does not answer, each failure may take minutes, and a quiet spell between two of
    them is no sign that it is back. ``writing=False`` says that what failed or succeeded
    only read: a database whose disk is full, or a standby after a failover, still
    answers reads, so a read's success does not end an outage in which a write failed."""

    def __init__(self, logger: logging.Logger, what: str, every: float = 60.0) -> None:
        self.logger = logger
        self.what = what  # what the failures do, e.g. "requests answer 503"
        self.every = every
        self._lock = threading.Lock()
        self._since: float | None = None  # when the outage began (monotonic)
        self._last_line = 0.0
        self._unlogged = 0
        self._failures = 0
        self._write_failed = False  # in this outage

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, *, writing: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            self._write_failed = writing or (self._write_failed and self._since is not None)
            if self._since is None:
                self._since, self._last_line, self._unlogged, self._failures = now, now, 0, 1
                line: tuple[object, ...] = (
                    "database unavailable (%s): %s until it is back",
                    outage_reason(exc),
                    self.what,
                )
            elif now - self._last_line >= self.every:
                line = (
                    "database still unavailable after %.0fs (%s): %d more failures",
                    now - self._since,
                    outage_reason(exc),
                    self._unlogged + 1,
                )
                self._last_line, self._unlogged = now, 0
            else:
                self._unlogged += 1
                return
        self.logger.warning(*line)

    def recovered(self, *, writing: bool = True, began: float | None = None) -> None:
        """A success: the end of an outage, unless it only read and a write failed, or it
        ``began`` (monotonic) before the outage did -- a request that read the database
        before its first failure and ends after it (an event stream closed) says
        nothing of it."""
        with self._lock:
            if self._since is None or (self._write_failed and not writing):
                return
            if began is not None and began < self._since:
                return
            seconds, failures = time.monotonic() - self._since, self._failures
            self._since = None
        self.logger.warning("database available again after %.1fs (%d failures)", seconds, failures)

    def forget(self) -> None:
        """End the outage without a line: its caller no longer waits for the database
        (it gave up what it kept for it). Whether the database is back is not known, so
        nothing says it is; a failure after this begins a new outage."""
        with self._lock:
            self._since = None


__all__ = ["OutageLog", "database_unavailable", "outage_reason"]
