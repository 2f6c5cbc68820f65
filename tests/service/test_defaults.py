"""``Jackfield.default``: the organization's default connector, else the built-in adapter."""

import logging
import uuid

import pytest

from jackfield import ConnectorConfigError, ConnectorNotFoundError
from jackfield.app import Jackfield
from jackfield.kernel import SECRET_MASK, call_async, get_logger
from jackfield.settings import Settings


async def test_storage_falls_back_to_local_files_under_data_dir(jf, org, tmp_path):
    resolved = jf.default("storage", org)
    assert resolved.builtin and resolved.provider.provider_type == "local_fs"
    provider = resolved.instantiate()
    await call_async(provider.put, "hello.txt", b"hi")
    assert (tmp_path / "data" / "storage" / org / "hello.txt").read_bytes() == b"hi"


def test_email_falls_back_to_smtp_from_settings(jf, org):
    resolved = jf.default("email", org)
    assert resolved.builtin and resolved.provider.provider_type == "smtp"
    assert resolved.config["host"] == jf.settings.smtp_host


def test_an_enabled_default_connector_wins(jf, admin, tmp_path):
    created = jf.connectors.create(
        admin,
        name="disk",
        category="storage",
        provider_type="local_fs",
        params=[{"key": "root", "value": str(tmp_path / "mine")}],
        is_default=True,
    )
    org = admin.organization_id
    assert jf.default("storage", org).builtin  # not enabled yet: still the built-in
    jf.connectors.test(admin, created["id"])
    jf.connectors.set_enabled(admin, created["id"], True)
    resolved = jf.default("storage", org)
    assert resolved.connector_id == created["id"] and resolved.config["root"] == str(
        tmp_path / "mine"
    )


def test_no_default_and_no_builtin_is_a_clear_error(jf, org):
    with pytest.raises(ConnectorNotFoundError, match="no default messaging connector"):
        jf.default("messaging", org)


def test_an_unknown_category_is_named_as_such(jf, org):
    """Before: "no default nope connector", as if a connector were missing."""
    with pytest.raises(ConnectorConfigError, match="unknown category 'nope'") as info:
        jf.default("nope", org)
    assert "messaging" in info.value.field_errors["category"]


def test_a_resolved_connector_shows_its_config_with_secrets_masked(jf, admin):
    """Before, ``print(jf.default(...))`` showed the decrypted token (a dataclass repr)."""
    created = jf.connectors.create(
        admin,
        name="vault",
        category="http",
        provider_type="vault_test",
        config={"url": "https://vault.example.com", "token": "good"},
        is_default=True,
    )
    jf.connectors.test(admin, created["id"])
    jf.connectors.set_enabled(admin, created["id"], True)
    resolved = jf.default("http", admin.organization_id)
    assert resolved.config["token"] == "good"  # the app still gets the real value
    shown = repr(resolved)
    assert "good" not in shown and SECRET_MASK in shown
    assert "https://vault.example.com" in shown and created["id"] in shown


def test_the_smtp_password_of_the_settings_is_masked_in_logs(database_url, tmp_path, caplog):
    """Before, ``JACKFIELD_SMTP_PASSWORD`` (the built-in email's password) was never known
    to the redactor: Jackfield's own loggers wrote it, and the repr showed it."""
    password = "smtp-canary-" + uuid.uuid4().hex
    settings = Settings(database_url=database_url, data_dir=tmp_path, smtp_password=password)
    jf = Jackfield(settings=settings)
    try:
        org = jf.accounts.create_org("acme")["id"]
        mailer = jf.default("email", org)
        assert mailer.config["password"] == password
        assert password not in repr(mailer)
        with caplog.at_level(logging.WARNING):
            get_logger("an_app").warning("mailer %s failed: bad password %s", mailer, password)
        assert caplog.messages and all(password not in m for m in caplog.messages)
    finally:
        jf.close()
