"""``orgs``, ``users`` and ``tokens`` commands."""

from __future__ import annotations

import typer

from ..service import Role
from .output import JsonOption, console, emit, emit_items, existing_database, jackfield, user_errors

orgs = typer.Typer(help="Organizations.", no_args_is_help=True)
users = typer.Typer(help="Users.", no_args_is_help=True)
tokens = typer.Typer(help="API tokens.", no_args_is_help=True)


@orgs.command("create")
def orgs_create(name: str, as_json: bool = JsonOption) -> None:
    """Create an organization."""
    with user_errors():
        org = jackfield().accounts.create_org(name)
    emit(org, as_json, lambda o: console.print(f"created organization {o['name']} ({o['id']})"))


@orgs.command("list")
def orgs_list(as_json: bool = JsonOption) -> None:
    """List organizations."""
    with user_errors():
        existing_database()
        items = jackfield().accounts.list_orgs()
    emit_items(items, as_json, ["id", "name", "created_at"])


@users.command("create")
def users_create(
    email: str,
    org: str = typer.Option(..., "--org", help="Organization name (created if missing)."),
    role: Role = typer.Option(..., "--role", help="admin or user."),
    password: str | None = typer.Option(None, "--password", help="Password for the UI."),
    token: bool = typer.Option(False, "--token", help="Also print a new API token, last."),
    as_json: bool = JsonOption,
) -> None:
    """Create a user."""
    with user_errors():
        user, new_token = jackfield().accounts.create_user(
            email, org, role, password=password, with_token=token
        )
    if as_json:
        emit({**user, "token": new_token} if token else user, True)
        return
    console.print(f"created {user['role']} {user['email']} in {user['organization']}")
    if new_token:
        print(new_token)


@users.command("deactivate")
def users_deactivate(email: str, as_json: bool = JsonOption) -> None:
    """Lock a user out: no login, no API token works, their UI sessions end."""
    with user_errors():
        user = jackfield().accounts.deactivate_user(email)
    emit(user, as_json, lambda u: console.print(f"deactivated {u['email']}"))


@tokens.command("revoke")
def tokens_revoke(
    user: str = typer.Option(..., "--user", help="The user's email."),
    name: str | None = typer.Option(None, "--name", help="Only the tokens with this label."),
    as_json: bool = JsonOption,
) -> None:
    """Revoke a user's API tokens (all of them, or those named --name)."""
    with user_errors():
        count = jackfield().accounts.revoke_tokens(user, name)
    result = {"user": user, "name": name, "revoked": count}
    emit(result, as_json, lambda r: console.print(f"revoked {r['revoked']} token(s) of {user}"))


@tokens.command("create")
def tokens_create(
    user: str = typer.Option(..., "--user", help="The user's email."),
    name: str = typer.Option("", "--name", help="A label for the token."),
    as_json: bool = JsonOption,
) -> None:
    """Create an API token; it is shown once."""
    with user_errors():
        token = jackfield().accounts.create_token(user, name)
    if as_json:
        emit({"user": user, "name": name, "token": token}, True)
    else:
        print(token)
