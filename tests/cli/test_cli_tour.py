"""The README tour through the real ``jackfield`` console script, on SQLite and PostgreSQL."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

JACKFIELD = shutil.which("jackfield", path=str(Path(os.sys.executable).parent))


class Cli:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [JACKFIELD, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == expect, (
            f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--json").stdout)


def make_cli(database_url: str, tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACKFIELD_")}
    env.update(
        JACKFIELD_DATABASE_URL=database_url,
        JACKFIELD_DATA_DIR=str(tmp_path / "data"),
        JACKFIELD_DIRECTORY_ALLOWLIST=str(tmp_path),  # where connectors may keep files
    )
    return Cli(env, tmp_path)


@pytest.fixture
def cli(sqlite_url, tmp_path) -> Cli:
    return make_cli(sqlite_url, tmp_path)


@pytest.fixture
def any_db_cli(database_url, tmp_path) -> Cli:
    """The CLI on SQLite and on PostgreSQL."""
    return make_cli(database_url, tmp_path)


def user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_the_readme_tour(any_db_cli, tmp_path):
    cli = any_db_cli
    cli.run("db", "upgrade")
    org = cli.json("orgs", "create", "acme")
    assert org["name"] == "acme"
    created = cli.run(
        "users", "create", "ann@acme.io", "--org", "acme", "--role", "admin", "--token"
    )
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("jf_")
    assert (
        cli.run("tokens", "create", "--user", "ann@acme.io", "--name", "ci")
        .stdout.strip()
        .startswith("jf_")
    )

    types = cli.json("providers", "list")["items"]
    assert {"local_fs", "smtp", "echo"} <= {t["provider_type"] for t in types}
    assert [
        t["provider_type"] for t in cli.json("providers", "list", "--category", "email")["items"]
    ] == ["smtp"]

    root = tmp_path / "files"
    conn = cli.json(
        *"connectors create --org acme --name disk".split(),
        *"--category storage --provider local_fs".split(),
        *["--param", f"root={root}"],
    )
    assert conn["status"] == "draft" and conn["params"][0] == {
        "key": "root",
        "value": str(root),
        "value_type": "text",
        "sequence": 10,
        "secret": False,
    }
    cid = conn["id"]
    assert [c["id"] for c in cli.json("connectors", "list", "--org", "acme")["items"]] == [cid]
    cli.run("orgs", "create", "beta")
    theirs = cli.json(
        *"connectors create --org beta --name mail --category email --provider smtp".split(),
        *["--param", "host=127.0.0.1"],
    )["id"]
    # without --org: every organization's, each named (the operator runs them all)
    listed = cli.json("connectors", "list")["items"]
    assert [(c["id"], c["organization"]) for c in listed] == [(cid, "acme"), (theirs, "beta")]
    table = cli.run("connectors", "list").stdout
    assert cid in table and theirs in table and "beta" in table
    assert [c["id"] for c in cli.json("connectors", "list", "--org", "beta")["items"]] == [theirs]

    result = cli.json("connectors", "test", cid)
    assert result == {
        "success": True,
        "message": result["message"],
        "details": result["details"],
        "status": "connected",
    }
    assert cli.json("connectors", "activate", cid)["is_enabled"] is True
    assert cli.json("connectors", "show", cid)["status"] == "connected"
    assert cli.json("connectors", "config", cid) == {"success": True, "config": {"root": str(root)}}

    renamed = cli.json("connectors", "update", cid, "--name", "disk2", "--default")
    assert renamed["name"] == "disk2" and renamed["is_default"] is True

    imported = tmp_path / "import.json"
    imported.write_text(json.dumps({"root": str(tmp_path / "other")}))
    after = cli.json("connectors", "import-config", cid, str(imported))
    assert after["params"][0]["value"] == str(tmp_path / "other") and after["status"] == "draft"

    assert cli.json("connectors", "deactivate", cid)["is_enabled"] is False
    cli.run("connectors", "delete", cid)
    assert cli.json("connectors", "list", "--org", "acme")["items"] == []


def test_user_errors_are_one_line_exit_1_and_change_nothing(cli, tmp_path):
    cli.run("orgs", "create", "acme")
    base = ("connectors", "create", "--org", "acme", "--name", "x")
    user_error(
        cli.run(*base, "--category", "storage", "--provider", "nope", expect=1),
        "unknown provider 'nope'",
    )
    user_error(
        cli.run(*base, "--category", "nope", "--provider", "local_fs", expect=1), "unknown category"
    )
    user_error(cli.run(*base, "--category", "storage", "--provider", "local_fs", expect=1), "Root")
    user_error(
        cli.run(*base, "--category", "email", "--provider", "smtp", "--param", "a..b=1", expect=1),
        "invalid parameter key",
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    user_error(
        cli.run(
            *base,
            "--category",
            "storage",
            "--provider",
            "local_fs",
            "--config-file",
            str(bad),
            expect=1,
        ),
        "not valid JSON",
    )
    # a directory: about the config file (was "check JACKFIELD_DATA_DIR and ..._URL")
    proc = cli.run(
        *base, "--category", "email", "--provider", "smtp", "--config-file", str(tmp_path), expect=1
    )
    user_error(proc, f"cannot read the config file {tmp_path}: Is a directory")
    assert "JACKFIELD_" not in proc.stderr
    assert cli.json("connectors", "list", "--org", "acme")["items"] == []

    conn = cli.json(
        *base,
        "--category",
        "storage",
        "--provider",
        "local_fs",
        "--param",
        f"root={tmp_path / 'files'}",
    )
    user_error(cli.run("connectors", "activate", conn["id"], expect=1), "not 'connected'")
    # the user never base64-encoded anything: the file is what is wrong (was "not
    # base64-encoded JSON")
    user_error(
        cli.run("connectors", "import-config", conn["id"], str(bad), expect=1),
        "the imported file is not a JSON file (Expecting",
    )
    not_utf8 = tmp_path / "nonutf8.json"
    not_utf8.write_bytes(b'\xff\xfe{"a":"1"}')
    proc = cli.run("connectors", "import-config", conn["id"], str(not_utf8), expect=1)
    user_error(proc, "not a JSON file (it is not UTF-8 text)")
    assert "base64" not in proc.stderr
    assert cli.json("connectors", "show", conn["id"])["is_enabled"] is False
    user_error(
        cli.run("connectors", "show", "00000000-0000-0000-0000-000000000000", expect=1),
        "no connector",
    )
    user_error(cli.run("connectors", "list", "--org", "ghost", expect=1), "no organization 'ghost'")
    user_error(
        cli.run("users", "create", "bad", "--org", "acme", "--role", "admin", expect=1),
        "not an email",
    )


def test_usage_errors_exit_2(cli, tmp_path):
    proc = cli.run("connectors", "create", "--name", "x", expect=2)
    assert "Missing option" in proc.stderr
    cli.run("no-such-command", expect=2)
    # what the command line itself got wrong is a usage error, as click's own (was exit 1)
    cli.run("orgs", "create", "acme")
    base = ("connectors", "create", "--org", "acme", "--name", "x", "--category", "email")
    proc = cli.run(*base, "--provider", "smtp", "--param", "novalue", expect=2)
    assert "'novalue': expected KEY=VALUE" in proc.stderr
    proc = cli.run(*base, "--provider", "smtp", "--param", f"cert=@{tmp_path}/nope", expect=2)
    assert "no file" in proc.stderr
    proc = cli.run("users", "create", "a@b.io", "--org", "acme", "--role", "superuser", expect=2)
    assert "'superuser' is not one of" in proc.stderr
    assert cli.json("connectors", "list", "--org", "acme")["items"] == []  # nothing was created


def test_a_failed_connection_test_exits_1_with_the_result(cli, tmp_path):
    cli.run("orgs", "create", "acme")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    conn = cli.json(
        *"connectors create --org acme --name x".split(),
        *"--category storage --provider local_fs".split(),
        *["--param", f"root={blocker}"],
    )
    proc = cli.run("connectors", "test", conn["id"], "--json", expect=1)
    result = json.loads(proc.stdout)
    assert result["success"] is False and result["status"] == "error" and result["message"]


def test_a_connector_id_in_upper_case_names_the_same_connector(cli, tmp_path):
    """As in REST (``/api/connectors/{id}``); before, ``no connector ...``, exit 1."""
    cli.run("orgs", "create", "acme")
    conn = cli.json(
        *"connectors create --org acme --name x".split(),
        *"--category storage --provider local_fs".split(),
        *["--param", f"root={tmp_path / 'files'}"],
    )
    (tmp_path / "files").mkdir()
    upper = conn["id"].upper()
    assert cli.json("connectors", "show", upper)["id"] == conn["id"]
    assert cli.json("connectors", "test", upper)["success"] is True
    assert cli.json("connectors", "activate", upper)["is_enabled"] is True
    assert cli.json("runtime", "restart", upper)["connector_id"] == conn["id"]


def test_keys_rotate(cli):
    cli.run("orgs", "create", "acme")
    cli.json(
        *"connectors create --org acme --name m".split(),
        *"--category email --provider smtp".split(),
        *"--param host=127.0.0.1 --param password=pw-123456".split(),
    )
    assert cli.json("keys", "rotate") == {"reencrypted": 1}
    assert cli.json("keys", "rotate") == {"reencrypted": 1}  # file mode makes a new key each time


def test_a_webhook_connector_shows_where_senders_post(cli):
    cli.env["JACKFIELD_PUBLIC_URL"] = "https://hooks.example.com/"
    cli.run("orgs", "create", "acme")
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    hook = cli.json(
        "connectors", "create", "--org", "acme", "--name", "in", "--category", "http",
        "--provider", "webhook", "--param", f"secret={secret}",
    )  # fmt: skip
    shown = cli.run("connectors", "show", hook["id"]).stdout
    assert f"webhook URL: https://hooks.example.com/hooks/{hook['id']}" in shown
    assert "webhook_url" not in cli.json("connectors", "show", hook["id"])  # the REST shape
    echo = cli.json(
        "connectors", "create", "--org", "acme", "--name", "out", "--category", "messaging",
        "--provider", "echo",
    )  # fmt: skip
    assert "webhook URL" not in cli.run("connectors", "show", echo["id"]).stdout


def test_a_database_path_that_names_no_database_is_never_taken_for_an_empty_one(cli, tmp_path):
    cli.run("orgs", "create", "acme")
    typo = tmp_path / "jackfeild.db"
    mistyped = Cli({**cli.env, "JACKFIELD_DATABASE_URL": f"sqlite:///{typo}"}, tmp_path)
    for listing in (
        ("orgs", "list"),
        ("connectors", "list"),
        ("outbox", "list"),
        ("runtime", "status"),
    ):
        user_error(mistyped.run(*listing, expect=1), f"there is no database at {typo}")
    assert not typo.exists()  # nothing was created by looking
    made = mistyped.run("orgs", "create", "other")  # a command that writes makes it, and says so
    assert made.stderr.strip() == (
        f"note: there was no database at {typo}: created a new, empty one"
        " (JACKFIELD_DATABASE_URL names it)"
    )
    assert mistyped.run("orgs", "list").stderr == ""  # said once, when it was made
    assert [o["name"] for o in cli.json("orgs", "list")["items"]] == ["acme"]


def test_a_database_without_a_driver_here_is_one_line(cli):
    mysql = Cli({**cli.env, "JACKFIELD_DATABASE_URL": "mysql://u@127.0.0.1/db"}, cli.cwd)
    user_error(mysql.run("runtime", "status", expect=1), "no driver for 'mysql' is installed")


def test_an_operator_revokes_tokens_and_deactivates_a_user(cli, sqlite_url):
    """During an incident: before, only the database could take a token or a user away."""
    from jackfield.kernel import AuthenticationError
    from jackfield.service.accounts import AccountService
    from jackfield.store import Database

    created = cli.run(*"users create eve@acme.io --org acme --role admin --token".split())
    ci = cli.run(*"tokens create --user eve@acme.io --name ci".split()).stdout.strip()
    first = created.stdout.strip().splitlines()[-1]
    accounts = AccountService(Database(sqlite_url))
    assert accounts.authenticate_token(ci).actor == "eve@acme.io"

    assert cli.json(*"tokens revoke --user eve@acme.io --name ci".split())["revoked"] == 1
    with pytest.raises(AuthenticationError):
        accounts.authenticate_token(ci)
    assert accounts.authenticate_token(first).actor == "eve@acme.io"  # the other one works

    shown = cli.run(*"users deactivate eve@acme.io".split())
    assert shown.stdout.strip() == "deactivated eve@acme.io"
    with pytest.raises(AuthenticationError):
        accounts.authenticate_token(first)
    refused = cli.run(*"tokens create --user eve@acme.io".split(), expect=1)
    user_error(refused, "is deactivated")  # a token that could only answer 401
    assert refused.stdout == ""
    user_error(cli.run(*"tokens revoke --user nobody@acme.io".split(), expect=1), "no user")
