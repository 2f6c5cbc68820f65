"""``serve``, ``db``, ``providers`` and ``keys`` commands."""

from __future__ import annotations

import typer

from .output import JsonOption, console, emit, emit_items, jackfield, user_errors

db = typer.Typer(help="Database schema.", no_args_is_help=True)
providers = typer.Typer(help="Provider types.", no_args_is_help=True)
keys = typer.Typer(help="Master keys.", no_args_is_help=True)


def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Run the REST API, admin UI and runtime in one process."""
    import uvicorn

    from ..api import create_app

    with user_errors():
        jf = jackfield()  # migrates and checks the master key before anything listens
        password = jf.settings.admin_password
        admin = jf.accounts.bootstrap_admin(password.get_secret_value() if password else None)
    if admin is not None:
        console.print(f"[bold]Bootstrap admin created:[/bold] {admin.email}")
        if admin.generated:
            console.print(f"  password (shown once): {admin.password}")
    console.print(f"Jackfield on http://{host}:{port}/  (health: /healthz)")
    # open SSE streams must not hold a shutdown forever
    uvicorn.run(create_app(jf), host=host, port=port, log_config=None, timeout_graceful_shutdown=5)


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations."""
    from ..settings import Settings
    from ..store import Database, upgrade

    with user_errors():
        database = Database(Settings().database_url)
        upgrade(database.engine)
        database.dispose()
    console.print("database is up to date")


@providers.command("list")
def providers_list(
    category: str | None = typer.Option(None, "--category"),
    as_json: bool = JsonOption,
) -> None:
    """List the provider types that can be configured."""
    with user_errors():
        items = jackfield().connectors.provider_types(category)
    emit_items(
        items, as_json, ["provider_type", "category", "display_name", "tier", "capabilities"]
    )


@keys.command("rotate")
def keys_rotate(as_json: bool = JsonOption) -> None:
    """Re-encrypt every secret under the current master key."""
    with user_errors():
        count = jackfield().rotate_keys()
    emit(
        {"reencrypted": count},
        as_json,
        lambda r: console.print(f"re-encrypted {r['reencrypted']} secret value(s)"),
    )
