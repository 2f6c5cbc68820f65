"""Which server directories a connector may use as its directory (``local_fs`` root):
only inside what the operator allowed (``JACKFIELD_DIRECTORY_ALLOWLIST``; the ``jf``
fixture allows its ``tmp_path``), never Jackfield's own files, never another
organization's directory. An organization's admin could otherwise overwrite the master
key, the database or Jackfield's own modules (code run by the server), or read another
organization's files. On SQLite and PostgreSQL."""

import base64
import os
from pathlib import Path

import pytest
from sqlalchemy import update

import jackfield
from jackfield import ConnectorConfigError
from jackfield.app import Jackfield
from jackfield.service import Principal, Role
from jackfield.settings import Settings
from jackfield.store import ConnectorParam

from .test_connector_service import snapshot


def storage(jf, who, root, name="files"):
    return jf.connectors.create(
        who,
        name=name,
        category="storage",
        provider_type="local_fs",
        params=[{"key": "root", "value": str(root)}],
    )


def reserved_roots(jf, tmp_path):
    data = jf.settings.data_dir
    roots = [data, data / "files", data / "storage" / "some-org", tmp_path]  # tmp_path: holds both
    if jf.db.engine.dialect.name == "sqlite":
        roots.append(tmp_path / "jackfield.db")
    (tmp_path / "link").symlink_to(data)  # a symbolic link does not hide where it leads
    return [*roots, tmp_path / "link", tmp_path / "link" / "storage"]


def test_a_root_overlapping_jackfields_own_files_is_refused(jf, admin, tmp_path):
    before = snapshot(jf)
    for root in reserved_roots(jf, tmp_path):
        with pytest.raises(ConnectorConfigError) as caught:
            storage(jf, admin, root)
        assert "root" in caught.value.field_errors, root
        assert "Jackfield's own data directory or database" in caught.value.field_errors["root"]
        if root == tmp_path:  # the reserved path itself is not told
            assert str(jf.settings.data_dir) not in str(caught.value)
    assert snapshot(jf) == before  # nothing was stored

    elsewhere = tmp_path / "elsewhere"
    created = storage(jf, admin, elsewhere)  # any other directory is fine
    assert jf.connectors.test(admin, created["id"])["success"] is True
    with pytest.raises(ConnectorConfigError):  # an update may not move it there either
        jf.connectors.update(
            admin, created["id"], params=[{"key": "root", "value": str(jf.settings.data_dir)}]
        )
    assert jf.connectors.get_config(admin, created["id"])["root"] == str(elsewhere)


def test_a_stored_root_that_leads_into_the_data_directory_is_refused_when_opened(
    jf, admin, tmp_path
):
    """A connector saved before the rule, or a link changed since, is caught at use."""
    created = storage(jf, admin, tmp_path / "elsewhere")
    with jf.db.transaction() as s:  # as stored by an earlier version
        s.execute(
            update(ConnectorParam)
            .where(ConnectorParam.connector_id == created["id"])
            .values(value=str(jf.settings.data_dir))
        )
    result = jf.connectors.test(admin, created["id"])
    assert result["success"] is False
    assert "Jackfield's own data directory" in result["message"]
    with pytest.raises(ConnectorConfigError):
        jf.open_provider(created["id"])
    assert not (jf.settings.data_dir / ".jackfield-probe").exists()


@pytest.mark.parametrize(
    "outside",
    [
        "/tmp",  # holds the allowed directory
        "/etc/cron.d",
        str(Path(jackfield.__file__).parent / "connectors"),  # a module written there runs
        "~nosuchuser-jf/x",  # cannot be resolved: a clear error, not a crash
    ],
)
def test_a_directory_the_operator_did_not_allow_is_refused(jf, admin, outside):
    before = snapshot(jf)
    with pytest.raises(ConnectorConfigError) as caught:
        storage(jf, admin, outside)
    problem = caught.value.field_errors["root"]
    assert "JACKFIELD_DIRECTORY_ALLOWLIST" in problem or "cannot be resolved" in problem
    assert snapshot(jf) == before


def test_connectors_an_upgrade_left_outside_the_allowlist_are_told_at_start(
    jf, admin, database_url, tmp_path
):
    """Upgraded without JACKFIELD_DIRECTORY_ALLOWLIST, a server looked healthy until a
    stored local_fs connector was used; ``serve`` prints these problems when it starts."""
    storage(jf, admin, tmp_path / "files")
    assert jf.connectors.directory_problems() == []
    settings = jf.settings.model_copy(update={"directory_allowlist": ""})
    upgraded = Jackfield(settings=settings)
    try:
        [problem] = upgraded.connectors.directory_problems()
        with pytest.raises(ConnectorConfigError) as caught:
            upgraded.open_provider(jf.connectors.list(admin)[0]["id"])
    finally:
        upgraded.close()
    assert problem.startswith("connector 'files' (") and "JACKFIELD_DIRECTORY_ALLOWLIST" in problem
    assert "ask the server's operator" in caught.value.remediation


def test_nothing_is_allowed_until_the_operator_says_where(database_url, tmp_path):
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    settings = Settings(database_url=database_url, data_dir=tmp_path / "data", secret_key=key)
    assert settings.directory_allowlist == ""  # the default
    jf = Jackfield(settings=settings)
    try:
        org = jf.accounts.create_org("acme")["id"]
        with pytest.raises(ConnectorConfigError, match="JACKFIELD_DIRECTORY_ALLOWLIST"):
            storage(jf, Principal(org, "a@acme.io", Role.ADMIN), tmp_path / "files")
    finally:
        jf.close()


def test_another_organizations_directory_is_refused(jf, admin, other_admin, tmp_path):
    storage(jf, admin, tmp_path / "acme")
    for taken in (tmp_path / "acme", tmp_path / "acme" / "inside", tmp_path):
        with pytest.raises(ConnectorConfigError) as caught:
            storage(jf, other_admin, taken, name="peek")
        assert "another organization" in caught.value.field_errors["root"] or (
            "Jackfield's own" in caught.value.field_errors["root"]  # (tmp_path holds data)
        )
    storage(jf, other_admin, tmp_path / "globex")  # a directory of its own is fine
    storage(jf, admin, tmp_path / "acme" / "more")  # the same organization may nest


def test_the_built_in_storage_still_lives_in_the_data_directory(jf, admin):
    resolved = jf.default("storage", admin.organization_id)
    assert resolved.builtin
    provider = resolved.instantiate()
    provider.put("hello.txt", b"hi")
    assert provider.get("hello.txt") == b"hi"
    assert (jf.settings.data_dir / "storage" / admin.organization_id / "hello.txt").exists()
