"""``outbox`` commands: list and show messages, replay (one, or all of a connector's) or
discard dead letters.

Thin calls into ``OutboxService`` as an operator (admin) of the message's organization;
they work while ``jackfield serve`` runs (a replayed message is picked up by its
workers within their poll interval).
"""

from __future__ import annotations

from typing import Any

import typer

from ..service import Principal
from .connectors import ConnectorArg, connector_id_arg, operator, operator_for
from .output import (
    JsonOption,
    console,
    emit,
    emit_items,
    existing_database,
    jackfield,
    printable,
    user_errors,
)

app = typer.Typer(help="Outbound messages and dead letters.", no_args_is_help=True)
COLUMNS = ["envelope_id", "connector_id", "state", "attempts", "next_attempt_at", "last_error"]
ConnectorOption = typer.Option(
    None,
    "--connector",
    help="Only this connector's messages (or: the one with this id).",
    callback=connector_id_arg,
)


def show_message(m: dict[str, Any]) -> None:
    console.print(f"{m['envelope_id']}  {m['state']}  connector {m['connector_id']}", style="bold")
    console.print(f"  attempts={m['attempts']}  next_attempt_at={m['next_attempt_at'] or '-'}")
    if m.get("error_class") or m.get("last_error"):
        error = f"{m.get('error_class') or 'error'}: {m.get('last_error') or ''}"
        console.print(f"  {printable(error)}")


def _operator_for_message(envelope_id: str, connector_id: str | None) -> Principal:
    if connector_id:
        return operator_for(connector_id)
    return Principal.operator(jackfield().runtime.outbox.organization_of(envelope_id))


@app.command("list")
def list_(
    org: str | None = typer.Option(
        None, "--org", help="Only this organization's messages (default: every organization's)."
    ),
    connector_id: str | None = ConnectorOption,
    state: str | None = typer.Option(
        None, "--state", help="pending, in_flight, retrying, delivered, dead or discarded"
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=500),
    cursor: str | None = typer.Option(
        None, "--cursor", help="The next_cursor a previous page printed: older messages."
    ),
    as_json: bool = JsonOption,
) -> None:
    """List messages, newest first ('--state dead' for dead letters)."""
    with user_errors():
        existing_database()
        outbox = jackfield().runtime.outbox
        if connector_id is None and org is None:  # the whole outbox, as its operator runs it
            items, next_cursor = outbox.list_deployment(state=state, limit=limit, cursor=cursor)
        else:
            who = operator_for(connector_id) if connector_id and org is None else operator(org)
            items, next_cursor = outbox.list(
                who, connector_id=connector_id, state=state, limit=limit, cursor=cursor
            )
    emit({"items": items, "next_cursor": next_cursor}, as_json, _show_page)


def _show_page(page: dict[str, Any]) -> None:
    emit_items(page["items"], False, COLUMNS)
    if page["next_cursor"]:
        console.print(f"older messages: --cursor {page['next_cursor']}")


def _message_command(verb: str, envelope_id: str, connector_id: str | None, as_json: bool) -> None:
    """show / replay / discard: the same call shape on ``OutboxService``."""
    with user_errors():
        who = _operator_for_message(envelope_id, connector_id)
        action = getattr(jackfield().runtime.outbox, verb)
        message = action(who, envelope_id, connector_id=connector_id)
    emit(message, as_json, show_message)


@app.command("show")
def show(
    envelope_id: str = typer.Argument(..., metavar="ENVELOPE_ID"),
    connector_id: str | None = ConnectorOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one message."""
    _message_command("get", envelope_id, connector_id, as_json)


@app.command("replay")
def replay(
    envelope_id: str = typer.Argument(..., metavar="ENVELOPE_ID"),
    connector_id: str | None = ConnectorOption,
    as_json: bool = JsonOption,
) -> None:
    """Send a dead message again (same envelope id, attempts reset)."""
    _message_command("replay", envelope_id, connector_id, as_json)


@app.command("replay-dead")
def replay_dead(connector_id: str = ConnectorArg, as_json: bool = JsonOption) -> None:
    """Send every dead message of CONNECTOR again (once the cause is fixed)."""
    with user_errors():
        result = jackfield().runtime.outbox.replay_dead(operator_for(connector_id), connector_id)
    emit(result, as_json, _show_replayed)


def _show_replayed(result: dict[str, Any]) -> None:
    count = result["replayed"]
    print(f"replayed {count} dead message{'' if count == 1 else 's'}")


@app.command("discard")
def discard(
    envelope_id: str = typer.Argument(..., metavar="ENVELOPE_ID"),
    connector_id: str | None = ConnectorOption,
    as_json: bool = JsonOption,
) -> None:
    """Give up on a dead message for good (it stays listed as discarded)."""
    _message_command("discard", envelope_id, connector_id, as_json)
