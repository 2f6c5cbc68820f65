"""The ``jackfield`` command: a thin client of the service and runtime layers."""

from __future__ import annotations

import typer

from . import accounts, admin, connectors, events, outbox, runtime, sim

app = typer.Typer(
    name="jackfield",
    help="Jackfield: configure, test and run connectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(admin.serve)
app.add_typer(admin.db, name="db")
app.add_typer(accounts.orgs, name="orgs")
app.add_typer(accounts.users, name="users")
app.add_typer(accounts.tokens, name="tokens")
app.add_typer(admin.providers, name="providers")
app.add_typer(connectors.app, name="connectors")
app.add_typer(admin.keys, name="keys")
app.add_typer(outbox.app, name="outbox")
app.add_typer(events.app, name="events")
app.add_typer(runtime.app, name="runtime")
app.add_typer(sim.app, name="sim")


def main() -> None:
    app()


__all__ = ["app", "main"]
