"""Echo: a loopback messaging provider for tests, demos and the simulator.

Every delivered message comes back as an inbound ``message.received`` event on the same
connector, so the whole path (send -> outbox -> delivery -> inbox -> handlers) can be
exercised without an external system. The payload field ``simulate`` injects faults so
the runtime's retry, dead-letter, reauth and crash handling can be tested end to end:

==================  =============================================================
``transient:N``     retryable failure while ``envelope.attempt <= N``, then success
``permanent``       permanent failure (the message goes to ``dead``)
``auth``            credentials refused (the connector needs reauth)
``crash``           an unexpected exception: the runtime counts it as a crash
``slow:MS``         sleep MS milliseconds, then succeed
==================  =============================================================
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import ClassVar

from jackfield.kernel import (
    AuthError,
    Capability,
    ConfigField,
    ConnectionTestResult,
    ConnectorError,
    Delivered,
    DeliveryOutcome,
    Envelope,
    FieldType,
    InboundEvent,
    MessagingProvider,
    OutboundMessage,
    PermanentError,
    SentMessage,
    Tier,
    TransientError,
)
from jackfield.kernel.categories.messaging import message_text
from jackfield.kernel.envelope import outcome_from_error
from jackfield.kernel.provider import offered_operations
from jackfield.kernel.randomness import random_bytes

SIMULATE_FIELD = "simulate"
LOOPBACK_EVENT = "message.received"
_SEND = ("", "send_message")


def _message_id() -> str:
    """128 random bits, as a uuid4's hex would carry (without a system call each)."""
    return f"echo-{random_bytes(16).hex()}"


class EchoProvider(MessagingProvider):
    """Sends nowhere; hands every delivered message back as an inbound event."""

    provider_type: ClassVar[str] = "echo"
    display_name: ClassVar[str] = "Echo (loopback)"
    tier: ClassVar[Tier] = Tier.INTERNAL_TEST_ONLY
    capabilities: ClassVar[frozenset[str]] = frozenset({Capability.THREADS})

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [
            ConfigField(
                "delay_ms",
                "Delay (ms)",
                type=FieldType.INTEGER,
                default=0,
                help="Added to every send, to imitate a slow system.",
            )
        ]

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(True, "echo is a loopback and always reachable")

    async def send_message(self, message: OutboundMessage) -> SentMessage:
        delay_ms = int(self.config.get("delay_ms") or 0)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        return SentMessage(message_id=_message_id(), channel=message.channel)

    @classmethod
    def operation_names(cls) -> frozenset[str] | None:
        return offered_operations(cls)  # deliver() dispatches through operations() too

    async def deliver(self, envelope: Envelope) -> DeliveryOutcome:
        """Apply ``simulate``, deliver the rest of the payload, and loop it back."""
        payload = envelope.payload
        if SIMULATE_FIELD in payload:  # (the common case copies nothing)
            simulate = payload[SIMULATE_FIELD]
            payload = {k: v for k, v in payload.items() if k != SIMULATE_FIELD}
            envelope = replace(envelope, payload=payload)
            if simulate is not None:
                try:
                    await _simulate(simulate, envelope.attempt)
                except ConnectorError as exc:
                    exc.operation = envelope.operation or self.default_operation
                    return outcome_from_error(exc)
        if envelope.operation in _SEND and not self.config.get("delay_ms"):
            # the common case, without the generic dispatch's layers (the outbox
            # benchmark measures the runtime through echo: echo's own cost should be ~0)
            try:
                message_text(payload)
            except ConnectorError as exc:
                exc.operation = "send_message"
                return outcome_from_error(exc)
            result = {"message_id": _message_id(), "channel": payload.get("channel")}
        else:
            outcome = await super().deliver(envelope)
            if not isinstance(outcome, Delivered):
                return outcome
            result = outcome.result
        event = InboundEvent(
            event_id=f"echo:{envelope.envelope_id}",
            event_type=LOOPBACK_EVENT,
            payload={
                **payload,
                "envelope_id": envelope.envelope_id,
                "message_id": result.get("message_id"),
            },
        )
        return Delivered(result=result, events=(event,))


def parse_simulate(spec: object) -> tuple[str, int]:
    """The fault ``spec`` asks for: ``(mode, n)``, ``n`` being the failures of
    ``transient:N`` or the milliseconds of ``slow:MS`` (else 0). A spec no mode reads
    raises ``PermanentError`` (the message's fault; ``sim send`` refuses it up front)."""
    mode, _, arg = str(spec).partition(":")
    if mode in ("transient", "slow"):
        return mode, _count(spec, arg)
    if arg:
        raise PermanentError(f"simulate mode {mode!r} takes no argument (got {spec!r})")
    if mode in ("permanent", "auth", "crash"):
        return mode, 0
    raise PermanentError(
        f"unknown simulate mode {spec!r}: use transient:N, permanent, auth, crash or slow:MS"
    )


async def _simulate(spec: object, attempt: int) -> None:
    """Raise the fault ``spec`` asks for; return normally to let the delivery go on."""
    mode, n = parse_simulate(spec)
    if mode == "transient" and attempt <= n:
        raise TransientError(f"simulated transient failure (attempt {attempt} of {n})")
    if mode == "slow":
        await asyncio.sleep(n / 1000)
    elif mode == "permanent":
        raise PermanentError("simulated permanent failure")
    elif mode == "auth":
        raise AuthError("simulated authentication failure")
    elif mode == "crash":
        raise RuntimeError("simulated crash (unexpected exception in the echo provider)")


def _count(spec: object, arg: str) -> int:
    # ASCII digits only (isdigit alone accepts '²', which int() refuses), and few enough
    # that asyncio.sleep takes them: a bad spec is the message's fault, not a crash
    if not (arg.isascii() and arg.isdigit()) or len(arg) > 9:
        raise PermanentError(
            f"simulate {spec!r} needs a whole number of at most 9 digits after the colon"
        )
    return int(arg)
