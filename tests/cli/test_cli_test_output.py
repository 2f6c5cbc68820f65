"""``jackfield connectors test``: the test's message comes from outside (a vendor's error,
a URL an admin typed) and is printed as text, its control characters escaped, as the
show and list commands print a status message."""

from typing import Any

import pytest
from typer.testing import CliRunner

from jackfield.cli import app
from jackfield.cli.output import jackfield
from jackfield.service import Principal, Role


@pytest.fixture
def cli_env(jf: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = jf.settings
    monkeypatch.setenv("JACKFIELD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("JACKFIELD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("JACKFIELD_SECRET_KEY", settings.secret_key.get_secret_value())
    jackfield.cache_clear()
    yield jf
    jackfield.cache_clear()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failed_tests_message_is_printed_with_its_escapes_shown(cli_env: Any) -> None:
    jf = cli_env
    org = jf.accounts.create_org("acme")["id"]
    hostile = "\x1b]0;pwned\x07\x1b[2J\x9b1m"
    connector = jf.connectors.create(
        Principal(org, "t", Role.ADMIN),
        name="vault",
        category="http",
        provider_type="vault_test",
        config={"url": f"https://vault.example/{hostile}", "token": "bad"},
    )
    done = CliRunner().invoke(app, ["connectors", "test", connector["id"]])
    assert done.exit_code == 1, done.output
    # before: the escape sequences reached the terminal raw (retitled and cleared it)
    assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in done.output)
    assert "failed: " in done.output and "\\x1b]0;pwned\\x07\\x1b[2J\\x9b1m" in done.output
