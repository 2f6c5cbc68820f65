"""What a unit shows of its connector's health, and how long it waits out an outage.

Readiness and ``last_error`` follow what the unit meets: deliveries' outcomes
(``note_outcome``), its source's polls and batches (``source_works``, ``source_failed``)
and its provider's opening (``opened``, ``open_failed``). A ``ConnectorError`` saying
the external system is down -- unreachable, failing for now, throttling -- is an outage,
not a crash (``is_outage``): the unit shows it and tries again after ``outage_delay``.

The outage backoff grows with each failure and starts over once the source has worked
for ``OUTAGE_RESET_SECONDS`` -- not at any first success: a source that fails, works for
a moment and fails again (a broker that accepts the connection and drops it) keeps
backing off, while one that fails now and then (a stream an idle timeout closes every few
minutes) reconnects at once. An error that will not pass by itself waits the cap; a
``Retry-After`` is a floor.

The callers check that the report is news (``Supervisor._newest``): of the unit's
current generation, or a delivery's of one a reload retired that nothing newer followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeGuard

from ..kernel.envelope import AuthFailed, DeliveryOutcome, Retry
from ..kernel.errors import ConnectorError, RetryClass
from ..kernel.redaction import get_logger
from ..secrets import redactor
from .retry import MAX_DELAY_SECONDS, Backoff
from .units import Unit, outcome_readiness, source_readiness

log = get_logger("jackfield.runtime.supervisor")  # (where operators have always read it)
OUTAGE_RESET_SECONDS = 60.0
"""How long a source (or an open) must have worked for its outage backoff to start over."""
MAX_ERROR_CHARS = 2000


def is_outage(exc: BaseException) -> TypeGuard[ConnectorError]:
    """Whether an error from a provider's ``open`` says its system is down, which passes
    by itself (unreachable, a temporary failure, throttling), rather than that its
    config or credentials are wrong."""
    return isinstance(exc, ConnectorError) and exc.retry_class in (
        RetryClass.TRANSIENT,
        RetryClass.RATE_LIMITED,
    )


def clip(unit: Unit, text: str) -> str:
    """A unit's error as its organization may see it."""
    return redactor.redact(text, org=unit.organization_id, limit=MAX_ERROR_CHARS)


class UnitHealth:
    def __init__(self, backoff: Backoff, mark: Callable[[Unit], None]) -> None:
        self.backoff = backoff
        self.mark = mark  # persist the unit's changed state (``UnitRecorder.mark``)

    def note_outcome(self, unit: Unit, outcome: DeliveryOutcome) -> None:
        """Readiness and ``last_error`` follow what deliveries report (a permanent error
        is the message's fault, not the connector's, and changes nothing): the latest
        failure's error, or none once one is delivered. Both are compared and set
        together, so a delivery that works clears an error shown beside ``ready`` too
        (a row an older version wrote), and the error shown is the latest, not the
        first of the outage."""
        readiness = outcome_readiness(outcome)
        if readiness is None:
            return
        error = None
        if isinstance(outcome, Retry | AuthFailed):
            error = clip(unit, f"{outcome.error_class}: {outcome.message}")
        if (readiness, error) != (unit.readiness, unit.last_error):
            unit.readiness, unit.last_error = readiness, error
            self.mark(unit)

    def source_works(self, unit: Unit) -> None:
        """The unit's source committed a poll or a batch: what its failure or crash said
        about the connector (unreachable, auth failed) is over, and so is its error --
        also a crash's that left readiness ``ready`` (a provider's bug, say)."""
        if unit.working_since is None:
            unit.working_since = asyncio.get_running_loop().time()
        if unit.readiness != "ready" or unit.last_error is not None:
            unit.readiness, unit.last_error = "ready", None
            self.mark(unit)

    def opened(self, unit: Unit) -> None:
        """The unit's provider opened: an outage that kept it from opening is over."""
        if unit.opening_failed:
            unit.opening_failed = False
            unit.working_since = asyncio.get_running_loop().time()
            unit.readiness, unit.last_error = "ready", None
            self.mark(unit)

    def outage_delay(self, unit: Unit, exc: ConnectorError) -> float:
        """Seconds to wait before trying a source (or an open) that failed with ``exc``
        again (see the module docstring)."""
        now = asyncio.get_running_loop().time()
        working = unit.working_since
        if working is not None and now - working >= OUTAGE_RESET_SECONDS:
            unit.source_failures = 0
        unit.working_since = None
        if exc.retry_class is RetryClass.NEVER:
            delay = self.backoff.max_seconds
        else:
            delay = self.backoff.delay(unit.source_failures)
        unit.source_failures += 1
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > delay:
            delay = min(float(retry_after), MAX_DELAY_SECONDS)
        return delay

    def show_outage(self, unit: Unit, exc: ConnectorError, what: str, delay: float) -> None:
        """Show an outage (readiness, ``last_error``) and log it: a warning when readiness
        changes, else at INFO -- an outage is retried often, its message may vary (times,
        request ids), and its log must not flood."""
        readiness = source_readiness(unit, exc)
        error = clip(unit, f"{type(exc).__name__}: {exc}")
        log.log(
            logging.INFO if readiness == unit.readiness else logging.WARNING,
            "unit %s%s (%s); trying again in %.1fs",
            unit.connector_id,
            what,
            error,
            delay,
        )
        if (readiness, error) != (unit.readiness, unit.last_error):
            unit.readiness, unit.last_error = readiness, error
            self.mark(unit)
