"""echo: the loopback event and every fault the ``simulate`` field can inject, seen
through ``deliver`` exactly as the outbox sees them."""

from __future__ import annotations

import time
from typing import Any

import pytest
from ulid import ULID

from jackfield.connectors.echo import EchoProvider
from jackfield.kernel import (
    AuthFailed,
    ConnectorRegistry,
    Delivered,
    Envelope,
    OutboundMessage,
    Permanent,
    Retry,
    RetryClass,
    SentMessage,
)


@pytest.fixture
def echo() -> EchoProvider:
    return EchoProvider.from_config({})


def envelope(payload: dict[str, Any], attempt: int = 1, envelope_id: str = "") -> Envelope:
    return Envelope(
        envelope_id=envelope_id or str(ULID()),
        connector_id="c-echo",
        operation="send_message",
        payload=payload,
        attempt=attempt,
    )


async def test_delivered_message_comes_back_as_message_received(echo: EchoProvider) -> None:
    env = envelope({"text": "hi", "channel": "general", "thread_id": "t1"})

    outcome = await echo.deliver(env)

    assert isinstance(outcome, Delivered)
    assert outcome.result["message_id"]
    assert outcome.result["channel"] == "general"
    (event,) = outcome.events
    assert event.event_id == f"echo:{env.envelope_id}"
    assert event.event_type == "message.received"
    assert event.payload == {
        "text": "hi",
        "channel": "general",
        "thread_id": "t1",
        "envelope_id": env.envelope_id,
        "message_id": outcome.result["message_id"],
    }


async def test_redelivery_of_one_envelope_yields_the_same_event_id(echo: EchoProvider) -> None:
    """The inbox deduplicates on event id, so an at-least-once redelivery is harmless."""
    env = envelope({"text": "again"})
    first, second = await echo.deliver(env), await echo.deliver(env)
    assert isinstance(first, Delivered) and isinstance(second, Delivered)
    assert first.events[0].event_id == second.events[0].event_id


async def test_default_operation_is_send_message(echo: EchoProvider) -> None:
    env = Envelope(envelope_id="e1", connector_id="c", operation="", payload={"text": "x"})
    assert isinstance(await echo.deliver(env), Delivered)


@pytest.mark.parametrize("failures", [1, 3])
async def test_transient_fails_n_times_then_succeeds(echo: EchoProvider, failures: int) -> None:
    payload = {"text": "flaky", "simulate": f"transient:{failures}"}
    for attempt in range(1, failures + 1):
        outcome = await echo.deliver(envelope(payload, attempt=attempt))
        assert isinstance(outcome, Retry), attempt
        assert outcome.retry_class is RetryClass.TRANSIENT
        assert outcome.error_class == "TransientError"
        assert f"attempt {attempt} of {failures}" in outcome.message

    final = await echo.deliver(envelope(payload, attempt=failures + 1))
    assert isinstance(final, Delivered)
    assert "simulate" not in final.events[0].payload
    assert final.events[0].payload["text"] == "flaky"


async def test_transient_zero_succeeds_at_once(echo: EchoProvider) -> None:
    outcome = await echo.deliver(envelope({"text": "x", "simulate": "transient:0"}))
    assert isinstance(outcome, Delivered)


async def test_permanent(echo: EchoProvider) -> None:
    outcome = await echo.deliver(envelope({"text": "x", "simulate": "permanent"}))
    assert outcome == Permanent("PermanentError", "simulated permanent failure")


async def test_auth(echo: EchoProvider) -> None:
    outcome = await echo.deliver(envelope({"text": "x", "simulate": "auth"}))
    assert outcome == AuthFailed("AuthError", "simulated authentication failure")


async def test_crash_raises_an_unexpected_exception(echo: EchoProvider) -> None:
    with pytest.raises(RuntimeError, match="simulated crash"):
        await echo.deliver(envelope({"text": "x", "simulate": "crash"}))


async def test_slow_waits_then_succeeds(echo: EchoProvider) -> None:
    started = time.monotonic()
    outcome = await echo.deliver(envelope({"text": "x", "simulate": "slow:150"}))
    assert time.monotonic() - started >= 0.14
    assert isinstance(outcome, Delivered)
    assert outcome.events[0].event_type == "message.received"


@pytest.mark.parametrize(
    ("simulate", "expected"),
    [
        ("explode", "unknown simulate mode 'explode'"),
        ("transient:many", "needs a whole number"),
        ("slow:-5", "needs a whole number"),
        ("transient:\u00b2", "needs a whole number"),  # a digit to isdigit(), not to int()
        ("slow:" + "9" * 400, "at most 9 digits"),  # more than asyncio.sleep takes
        ("permanent:2", "takes no argument"),
    ],
)
async def test_unknown_or_malformed_simulate_is_permanent(
    echo: EchoProvider, simulate: str, expected: str
) -> None:
    outcome = await echo.deliver(envelope({"text": "x", "simulate": simulate}))
    assert isinstance(outcome, Permanent)
    assert expected in outcome.message


async def test_a_message_without_text_is_permanent(echo: EchoProvider) -> None:
    outcome = await echo.deliver(envelope({"channel": "general"}))
    assert isinstance(outcome, Permanent)
    assert "text" in outcome.message


async def test_unknown_operation_is_permanent(echo: EchoProvider) -> None:
    env = Envelope(envelope_id="e2", connector_id="c", operation="launch", payload={})
    outcome = await echo.deliver(env)
    assert isinstance(outcome, Permanent)
    assert "send_message" in outcome.message


async def test_send_message_directly(echo: EchoProvider) -> None:
    sent = await echo.send_message(OutboundMessage(text="hello", channel="ops"))
    assert isinstance(sent, SentMessage)
    assert sent.message_id.startswith("echo-")
    assert sent.channel == "ops"


async def test_delay_ms_slows_every_send() -> None:
    slow = EchoProvider.from_config({"delay_ms": "120"})
    started = time.monotonic()
    assert isinstance(await slow.deliver(envelope({"text": "x"})), Delivered)
    assert time.monotonic() - started >= 0.11


def test_connection_test_succeeds(echo: EchoProvider) -> None:
    result = echo.test_connection()
    assert result.success


def test_registers_as_an_internal_test_only_messaging_provider() -> None:
    registry = ConnectorRegistry()
    registry.register_path("jackfield.connectors.echo:EchoProvider")
    assert registry.get("messaging", "echo") is EchoProvider
    assert (EchoProvider.display_name, EchoProvider.tier) == (
        "Echo (loopback)",
        "internal_test_only",
    )
