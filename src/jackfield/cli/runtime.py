"""``runtime`` commands: the state of supervised units, and restarting one.

They read and write the database the serving process uses, so they work from another
shell while ``jackfield serve`` runs: a restart is a request its supervisor picks up
within its poll interval (``JACKFIELD_SUPERVISOR_POLL_SECONDS``).
"""

from __future__ import annotations

import typer

from .connectors import ConnectorIdArg, named_organizations, operator, operator_for
from .output import JsonOption, emit, emit_items, existing_database, jackfield, user_errors

app = typer.Typer(help="Supervised connector units.", no_args_is_help=True)
COLUMNS = [
    "connector_id",
    "connector_name",
    "liveness",
    "readiness",
    "restart_count",
    "last_error",
    "node",
]


@app.command("status")
def status(
    org: str | None = typer.Option(
        None, "--org", help="Only this organization's units (default: every organization's)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Liveness and readiness of every supervised unit (one row per connector and node)."""
    with user_errors():
        existing_database()
        units = jackfield().runtime.units
        if org is not None:
            items, columns = units.list(operator(org)), COLUMNS
        else:  # the whole runtime, as its operator runs it
            items = named_organizations(units.list_deployment())
            columns = ["organization", *COLUMNS]
    emit_items(items, as_json, columns)


@app.command("restart")
def restart(connector_id: str = ConnectorIdArg, as_json: bool = JsonOption) -> None:
    """Restart a connector's unit on every node (also clears 'failed')."""
    with user_errors():
        unit = jackfield().runtime.units.request_restart(operator_for(connector_id), connector_id)
    emit(
        unit,
        as_json,
        lambda u: print(f"restart of {u['connector_id']} requested (now {u['liveness']})"),
    )
