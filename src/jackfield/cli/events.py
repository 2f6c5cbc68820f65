"""``events`` command: a connector's inbox, as ``GET /api/connectors/{id}/events`` serves
it -- newest first, a page at a time. Works while ``jackfield serve`` runs."""

from __future__ import annotations

import json
from typing import Any

import typer

from ..service.events import MAX_LIMIT, EventService
from .connectors import ConnectorArg, operator_for
from .output import JsonOption, console, emit, emit_items, jackfield, user_errors

app = typer.Typer(help="Inbound events (the inbox).", no_args_is_help=True)
COLUMNS = ["id", "event_id", "event_type", "source", "received_at", "payload"]
PAYLOAD_CHARS = 120  # in the table; --json has every event whole


@app.command("list")
def list_(
    connector_id: str = ConnectorArg,
    limit: int = typer.Option(50, "--limit", min=1, max=MAX_LIMIT),
    cursor: str | None = typer.Option(
        None, "--cursor", help="The next_cursor a previous page printed: older events."
    ),
    as_json: bool = JsonOption,
) -> None:
    """List CONNECTOR's inbound events, newest first."""
    with user_errors():
        page = EventService(jackfield().db).list(
            operator_for(connector_id), connector_id, limit=limit, cursor=cursor
        )
    emit(page, as_json, _show)


def _show(page: dict[str, Any]) -> None:
    emit_items([{**e, "payload": _short(e["payload"])} for e in page["items"]], False, COLUMNS)
    if page["next_cursor"]:
        console.print(f"older events: --cursor {page['next_cursor']}")


def _short(payload: Any) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= PAYLOAD_CHARS else text[: PAYLOAD_CHARS - 1] + "…"
