"""``sim`` commands: exercise a connector without its external system.

``sim send`` queues an outbound message exactly as an application would (the running
``jackfield serve`` delivers it); ``sim inject`` commits an inbound event to the inbox as
if the connector had received it, so handlers, the event stream and the UI see it.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from ..connectors.echo import parse_simulate
from ..kernel.errors import PermanentError
from ..service.events import EventService
from .connectors import ConnectorArg, operator_for
from .output import JsonOption, console, emit, fail, jackfield, user_errors

app = typer.Typer(help="Simulator: send and inject events.", no_args_is_help=True)


@app.command("send")
def send(
    connector_id: str = ConnectorArg,
    text: str = typer.Argument(..., metavar="TEXT"),
    simulate: str | None = typer.Option(
        None,
        "--simulate",
        metavar="FAULT",
        help="Echo's fault injection: transient:N, permanent, auth, crash or slow:MS.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Queue the message {"text": TEXT} on CONNECTOR (delivered by the runtime); with
    --simulate, an echo connector fails (or slows) as asked, to exercise retries, dead
    letters and restarts."""
    if simulate is not None:  # refused here, not as a dead letter later
        try:
            parse_simulate(simulate)
        except PermanentError as exc:
            raise typer.BadParameter(exc.message, param_hint="--simulate") from None
    payload = {"text": text} if simulate is None else {"text": text, "simulate": simulate}
    with user_errors():
        operator_for(connector_id)  # an unknown connector is a one-line error
        envelope_id = jackfield().send(connector_id, payload)
    result = {"envelope_id": envelope_id, "connector_id": connector_id}
    emit(result, as_json, lambda r: console.print(f"queued {r['envelope_id']}"))


@app.command("inject")
def inject(
    connector_id: str = ConnectorArg,
    payload: str = typer.Argument(..., metavar="JSON", help="The event payload, an object."),
    event_type: str | None = typer.Option(
        None, "--type", help="Event type (default: the payload's 'type', else message.received)."
    ),
    event_id: str | None = typer.Option(
        None, "--event-id", help="Event id (default: a new one); a known id is not stored twice."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Commit an inbound event to CONNECTOR's inbox as if it had been received."""
    with user_errors():
        data = _parse(payload)
        event = EventService(jackfield().db).inject(
            operator_for(connector_id),
            connector_id,
            data,
            event_type=event_type,
            event_id=event_id,
        )
    emit(event, as_json, _show)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(f"JSON is not valid JSON ({exc})", 'pass one JSON object, e.g. \'{"text": "hi"}\'')
    except RecursionError:  # nested deeper than the parser goes
        fail("JSON nests too deep", "payloads may nest at most 64 levels")


def _show(event: dict[str, Any]) -> None:
    what = f"{event['event_type']} {event['event_id']} (inbox id {event['id']})"
    if event["duplicate"]:
        console.print(f"already stored, nothing injected: {what}")
    else:
        console.print(f"injected {what}")
