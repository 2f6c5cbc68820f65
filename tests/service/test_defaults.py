"""``Jackfield.default``: the organization's default connector, else the built-in adapter."""

import pytest

from jackfield import ConnectorConfigError, ConnectorNotFoundError
from jackfield.kernel import call_async


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
