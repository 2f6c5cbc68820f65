"""A connector may not use Jackfield's own files as its directory (``local_fs`` root):
one organization's admin could otherwise read or overwrite the master key, the database
and every organization's file params and built-in storage. On SQLite and PostgreSQL."""

import pytest
from sqlalchemy import update

from jackfield import ConnectorConfigError
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


def test_the_built_in_storage_still_lives_in_the_data_directory(jf, admin):
    resolved = jf.default("storage", admin.organization_id)
    assert resolved.builtin
    provider = resolved.instantiate()
    provider.put("hello.txt", b"hi")
    assert provider.get("hello.txt") == b"hi"
    assert (jf.settings.data_dir / "storage" / admin.organization_id / "hello.txt").exists()
