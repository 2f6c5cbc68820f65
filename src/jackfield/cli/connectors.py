"""``connectors`` commands: thin calls into ``ConnectorService``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from ..kernel.errors import ConnectorConfigError
from ..service import Principal
from ..service.lookup import connector_id_of
from .output import (
    JsonOption,
    console,
    emit,
    emit_items,
    existing_database,
    fail,
    jackfield,
    printable,
    user_errors,
)

app = typer.Typer(help="Connector instances.", no_args_is_help=True)

ParamOption = typer.Option(
    None, "--param", help="KEY=VALUE (repeatable); KEY=@FILE stores a file param."
)
COLUMNS = ["id", "name", "category", "provider_type", "status", "is_enabled", "is_default"]


def operator(org: str | None) -> Principal:
    """The operator as admin of ``org``, or of the only organization there is."""
    accounts = jackfield().accounts
    if org is None:
        orgs = accounts.list_orgs()
        if len(orgs) != 1:
            fail("name the organization with --org", "see 'jackfield orgs list'")
        return Principal.operator(orgs[0]["id"])
    return Principal.operator(accounts.org_id(org))


def named_organizations(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` (each with an ``organization_id``) with their organization's name, for
    the listings that cover every organization."""
    names = {o["id"]: o["name"] for o in jackfield().accounts.list_orgs()}
    return [{**item, "organization": names.get(item["organization_id"], "?")} for item in items]


def connector_id_arg(value: str | None) -> str | None:
    """A connector id in any letter case, as REST takes it (``ABC...`` names ``abc...``)."""
    return None if value is None else connector_id_of(value)


ConnectorIdArg = typer.Argument(..., metavar="ID", callback=connector_id_arg)
ConnectorArg = typer.Argument(..., metavar="CONNECTOR", callback=connector_id_arg)


def operator_for(connector_id: str) -> Principal:
    return Principal.operator(jackfield().connectors.organization_of(connector_id))


def parse_params(pairs: list[str] | None) -> list[dict[str, Any]]:
    params = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:  # a usage error (exit 2), as click's own
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--param")
        if value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise typer.BadParameter(f"{key}: no file {path}", param_hint="--param")
            encoded = base64.b64encode(path.read_bytes()).decode()
            params.append({"key": key, "value": encoded, "value_type": "file"})
        else:
            params.append({"key": key, "value": value})
    return params


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConnectorConfigError(f"no file {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConnectorConfigError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:  # a directory, no permission: about the file, not the settings
        raise ConnectorConfigError(
            f"cannot read the config file {path}: {exc.strerror or exc}",
            remediation="name a readable JSON file",
        ) from None


# rich folds a long unbroken value in time that grows with the square of its length (10
# thousand characters: seconds; a 1 MB value stored before the service's limits: minutes)
SHOWN_CHARACTERS = 500


def shortened(value: Any) -> str:
    """``value`` as text, cut to ``SHOWN_CHARACTERS`` with a note saying how much is left
    out (``--json`` prints the connector whole)."""
    text = str(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[:SHOWN_CHARACTERS]}... ({len(text)} characters; --json shows them all)"


def show_connector(c: dict[str, Any]) -> None:
    console.print(f"{printable(c['name'])}  {c['id']}", style="bold")
    console.print(
        f"  {c['category']}/{c['provider_type']}  status={c['status']}"
        f"  enabled={c['is_enabled']}  default={c['is_default']}"
    )
    if c["status_message"]:
        console.print(f"  {printable(shortened(c['status_message']))}")
    for p in c["params"]:
        console.print(f"  {printable(p['key'])} = {printable(shortened(p['value']))}")


@app.command("list")
def list_(
    org: str | None = typer.Option(
        None, "--org", help="Only this organization's connectors (default: every organization's)."
    ),
    category: str | None = typer.Option(None, "--category"),
    as_json: bool = JsonOption,
) -> None:
    """List connectors."""
    with user_errors():
        existing_database()
        connectors = jackfield().connectors
        if org is None:
            items = named_organizations(connectors.list_deployment(category=category))
            columns = ["organization", *COLUMNS]
        else:
            items, columns = connectors.list(operator(org), category=category), COLUMNS
    emit_items(items, as_json, columns)


@app.command("create")
def create(
    org: str | None = typer.Option(None, "--org"),
    name: str = typer.Option(..., "--name"),
    category: str = typer.Option(..., "--category"),
    provider: str = typer.Option(..., "--provider"),
    param: list[str] | None = ParamOption,
    config_file: Path | None = typer.Option(None, "--config-file", help="Nested JSON config."),
    default: bool = typer.Option(False, "--default", help="Make it the category's default."),
    as_json: bool = JsonOption,
) -> None:
    """Create a connector."""
    with user_errors():
        config = read_json_file(config_file) if config_file else None
        if config is not None and not isinstance(config, dict):
            raise ConnectorConfigError(f"{config_file} must hold a JSON object")
        connector = jackfield().connectors.create(
            operator(org),
            name=name,
            category=category,
            provider_type=provider,
            params=parse_params(param),
            config=config,
            is_default=default,
        )
    emit(connector, as_json, show_connector)


@app.command("update")
def update(
    connector_id: str = ConnectorIdArg,
    name: str | None = typer.Option(None, "--name"),
    param: list[str] | None = ParamOption,
    default: bool | None = typer.Option(None, "--default/--no-default"),
    as_json: bool = JsonOption,
) -> None:
    """Rename, change params (merged key by key) or the default flag."""
    with user_errors():
        params = parse_params(param) or None
        connector = jackfield().connectors.update(
            operator_for(connector_id),
            connector_id,
            name=name,
            params=params,
            is_default=default,
            merge=True,
        )
    emit(connector, as_json, show_connector)


@app.command("show")
def show(connector_id: str = ConnectorIdArg, as_json: bool = JsonOption) -> None:
    """Show one connector (secret values masked)."""
    with user_errors():
        jf = jackfield()
        connector = jf.connectors.get(operator_for(connector_id), connector_id)
        webhook_url = jf.webhook_url(connector)

    def render(c: dict[str, Any]) -> None:
        show_connector(c)
        if webhook_url:
            console.print(f"  webhook URL: {webhook_url}", soft_wrap=True)  # pasted whole

    emit(connector, as_json, render)


@app.command("delete")
def delete(connector_id: str = ConnectorIdArg, as_json: bool = JsonOption) -> None:
    """Delete a connector and its params."""
    with user_errors():
        jackfield().connectors.delete(operator_for(connector_id), connector_id)
    emit(
        {"id": connector_id, "deleted": True},
        as_json,
        lambda _: console.print(f"deleted {connector_id}"),
    )


@app.command("test")
def test(connector_id: str = ConnectorIdArg, as_json: bool = JsonOption) -> None:
    """Test the connection; exit 1 when the test fails."""
    with user_errors():
        result = jackfield().connectors.test(operator_for(connector_id), connector_id)
    emit(
        result,
        as_json,
        lambda r: console.print(
            Text.assemble(("ok", "green") if r["success"] else ("failed", "red"), ": "),
            printable(r["message"]),
            sep="",
        ),
    )
    if not result["success"]:
        raise typer.Exit(1)


def _set_enabled(connector_id: str, enabled: bool, as_json: bool) -> None:
    with user_errors():
        connector = jackfield().connectors.set_enabled(
            operator_for(connector_id), connector_id, enabled
        )
    emit(connector, as_json, show_connector)


@app.command("activate")
def activate(connector_id: str = ConnectorIdArg, as_json: bool = JsonOption) -> None:
    """Enable a connector (it must be connected)."""
    _set_enabled(connector_id, True, as_json)


@app.command("deactivate")
def deactivate(connector_id: str = ConnectorIdArg, as_json: bool = JsonOption) -> None:
    """Disable a connector."""
    _set_enabled(connector_id, False, as_json)


@app.command("config")
def config(connector_id: str = ConnectorIdArg, as_json: bool = JsonOption) -> None:
    """Print the nested config (secrets masked)."""
    with user_errors():
        data = jackfield().connectors.get_config(operator_for(connector_id), connector_id)
    emit({"success": True, "config": data}, as_json)


@app.command("import-config")
def import_config(
    connector_id: str = ConnectorIdArg,
    file: Path = typer.Argument(..., metavar="FILE"),
    as_json: bool = JsonOption,
) -> None:
    """Replace all params with a JSON file (the provider's normalize_import_json applies)."""
    with user_errors():
        if not file.is_file():
            raise ConnectorConfigError(f"no file {file}")
        content = base64.b64encode(file.read_bytes()).decode()
        connector = jackfield().connectors.import_config(
            operator_for(connector_id),
            connector_id,
            file_content=content,
            file_name=file.name,
            file_mime="application/json",
        )
    emit(connector, as_json, show_connector)
