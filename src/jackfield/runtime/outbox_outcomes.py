"""What a delivery attempt comes to: a provider's outcome turned into the ack to record.

Kept apart from the worker's scheduling so the rules read in one place: ``Delivered``
records the result (and the loopback events); ``Permanent`` goes to ``dead``; ``Retry``
and ``AuthFailed`` are retried on the connector's ``RetryPolicy`` (a ``Retry-After`` is
a floor) until it is exhausted, then ``dead``. A delivery the node's shutdown cut off is
an attempt too (it may have reached the receiver), retried at once. A delivery that
crashed the unit is retried too, unless the message has now crashed it ``limit`` times:
then it is a poison message and goes to ``dead``, so that one bad message cannot hold
its connector down (its crashes would otherwise mark the unit ``failed`` long before its
retries run out, and the messages behind it would wait for an operator). Error texts
(and results, should a provider quote a secret in one) are redacted here, before they
reach the database.
"""

from __future__ import annotations

from datetime import timedelta

from ..kernel.envelope import (
    AuthFailed,
    Delivered,
    DeliveryOutcome,
    Permanent,
    Retry,
    outcome_from_error,
)
from ..kernel.errors import ConnectorError, RetryClass
from ..kernel.inbound import shape_problem
from ..secrets import redactor
from ..store import utcnow
from .outbox_store import Ack, Claimed
from .retry import RetryPolicy


def failed(exc: TimeoutError | ConnectorError) -> DeliveryOutcome:
    """The outcome of a delivery that raised a ``ConnectorError`` (its own outcome) or
    let a ``TimeoutError`` out (a transient failure). Anything else a provider raises is
    a crash of the unit, which the worker reports."""
    if isinstance(exc, ConnectorError):
        return outcome_from_error(exc)
    return Retry(RetryClass.TRANSIENT, "DeliveryTimeout", f"delivery timed out: {exc}")


def overran(seconds: float) -> Retry:
    """The outcome of a delivery still running after the delivery timeout (``seconds``):
    a transient failure, as when the provider's own timeout ends it."""
    return Retry(
        RetryClass.TRANSIENT, "DeliveryTimeout", f"delivery did not finish within {seconds:g} s"
    )


def crashed(exc: BaseException, times: int, limit: int) -> DeliveryOutcome:
    """The outcome of a delivery that raised something unexpected (a unit crash), the
    ``times``-th crash of the unit this message caused."""
    if times >= limit:
        return Permanent(type(exc).__name__, f"crashed the connector {times} times: {exc}")
    return Retry(RetryClass.TRANSIENT, type(exc).__name__, f"unexpected error: {exc}")


def checked(outcome: object) -> DeliveryOutcome:
    """``outcome`` if the worker can record it. Not an outcome at all raises
    ``TypeError`` (the unit crashed: a provider's bug); events the inbox cannot store make
    the message dead at once (the same delivery would make them again)."""
    if not isinstance(outcome, DeliveryOutcome):
        raise TypeError(f"deliver() returned {type(outcome).__name__}, not a DeliveryOutcome")
    if isinstance(outcome, Delivered):
        for event in outcome.events:
            problem = shape_problem(event)
            if problem is not None:
                return Permanent(
                    "InvalidEventError",
                    f"delivered, but an event it returned cannot be stored: {problem}",
                )
    return outcome


def cut_off() -> Retry:
    """The outcome of a delivery the node's shutdown cancelled after its grace: the
    request may have gone out, so the attempt counts, but the receiver did not fail --
    the message is due again at once (``ack_for(..., at_once=True)``)."""
    return Retry(RetryClass.TRANSIENT, "Shutdown", "cut off by the node's shutdown")


def ack_for(
    message: Claimed, policy: RetryPolicy, outcome: DeliveryOutcome, *, at_once: bool = False
) -> Ack:
    """The ack recording ``outcome``; a retry falls due after the policy's delay, or
    ``at_once``."""
    if isinstance(outcome, Delivered):  # a result quoting a secret is stored masked
        result = redactor.redact_obj(outcome.result, org=message.organization_id)
        return Ack(message, "delivered", result, outcome.events)
    error = redactor.redact(outcome.message, org=message.organization_id)
    if isinstance(outcome, Permanent):
        return Ack(message, "dead", error_class=outcome.error_class, last_error=error)
    retry_after = outcome.retry_after if isinstance(outcome, Retry) else None
    if isinstance(outcome, AuthFailed | Retry) and not policy.exhausted(message.attempts):
        delay = 0.0 if at_once else policy.delay(message.attempts, retry_after)
        return Ack(
            message,
            "retrying",
            error_class=outcome.error_class,
            last_error=error,
            next_attempt_at=utcnow() + timedelta(seconds=delay),
        )
    return Ack(
        message,
        "dead",
        error_class=outcome.error_class,
        last_error=f"gave up after {message.attempts} attempts: {error}",
    )
