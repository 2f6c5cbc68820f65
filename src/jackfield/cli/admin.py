"""``serve``, ``db``, ``providers`` and ``keys`` commands."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import typer

from ..logs import configure_logging
from .output import JsonOption, console, emit, emit_items, jackfield, user_errors

db = typer.Typer(help="Database schema.", no_args_is_help=True)
providers = typer.Typer(help="Provider types.", no_args_is_help=True)
keys = typer.Typer(help="Master keys.", no_args_is_help=True)


def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    as_json: bool = JsonOption,
) -> None:
    """Run the REST API, admin UI and runtime in one process."""
    from ..api import create_app
    from .serving import Server, listen, stop_seconds

    listener = listen(host, port)  # first: a taken port must not start the runtime
    with user_errors():
        jf = jackfield(upgrade=True)  # migrates, checks the master key before listening
        configure_logging(jf.settings.log_format)  # with tracebacks, unlike other commands
        password = jf.settings.admin_password
        admin = jf.accounts.bootstrap_admin(password.get_secret_value() if password else None)
    address = f"[{host}]" if ":" in host else host
    url = f"http://{address}:{listener.getsockname()[1]}/"
    started: dict[str, Any] = {
        "url": url,
        "health": f"{url}healthz",
        "public_url": jf.settings.public_url,
        # the default public URL is port 8000's: say so when this server is elsewhere
        "public_url_is_default": "public_url" not in jf.settings.model_fields_set,
        "directory_problems": jf.connectors.directory_problems(),
        "bootstrap_admin": None,
    }
    if admin is not None:
        started["bootstrap_admin"] = {"email": admin.email}
        if admin.generated:
            started["bootstrap_admin"]["password"] = admin.password  # shown once
    emit(started, as_json, _show_started)
    Server(create_app(jf), stop_seconds(jf.settings)).run(sockets=[listener])


def _show_started(started: dict[str, Any]) -> None:
    admin = started["bootstrap_admin"]
    if admin is not None:
        console.print(f"Bootstrap admin created: {admin['email']}", style="bold")
        if "password" in admin:
            console.print(f"  password (shown once): {admin['password']}")
    console.print(f"Jackfield on {started['url']}  (health: /healthz)")
    for problem in started["directory_problems"]:  # e.g. upgraded without the allowlist
        console.print(f"note: {problem}")
    public = started["public_url"].rstrip("/") + "/"
    if started["public_url_is_default"] and urlsplit(public).port != urlsplit(started["url"]).port:
        # webhook URLs, OAuth redirect URIs and the return from OAuth are built on it
        console.print(
            f"note: webhook and OAuth URLs use JACKFIELD_PUBLIC_URL {public}, not this"
            " address; set it to the URL that senders and browsers reach"
        )


@db.command("upgrade")
def db_upgrade(as_json: bool = JsonOption) -> None:
    """Apply database migrations."""
    from ..settings import Settings
    from ..store import Database, upgrade

    with user_errors():
        database = Database(Settings().database_url)
        before, after = upgrade(database.engine)
        database.dispose()
    done = {"up_to_date": before == after, "from": before, "to": after}  # nothing applied
    emit(done, as_json, _show_upgraded)


def _show_upgraded(done: dict[str, Any]) -> None:
    if done["up_to_date"]:
        console.print(f"database is up to date (revision {done['to']})")
    else:
        console.print(f"database upgraded from revision {done['from'] or 'none'} to {done['to']}")


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
