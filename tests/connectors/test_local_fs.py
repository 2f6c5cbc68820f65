"""local_fs passes the storage conformance suite, plus what only a filesystem can get
wrong: symlinks out of the root, unusable roots, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ulid import ULID

from jackfield.connectors.local_fs import LocalFsProvider
from jackfield.kernel import (
    ConnectorConfigError,
    ConnectorNotFoundError,
    ConnectorRegistry,
    Envelope,
    Permanent,
    PermanentError,
)
from jackfield.testing import StorageConformance


class TestLocalFsConformance(StorageConformance):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> LocalFsProvider:
        provider = LocalFsProvider.from_config({"root": str(tmp_path / "store")})
        provider.open()
        return provider


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def store(root: Path) -> LocalFsProvider:
    return LocalFsProvider.from_config({"root": str(root)})


def test_objects_are_plain_files_under_the_root(store: LocalFsProvider, root: Path) -> None:
    store.put("a/b/c.txt", b"data")
    assert (root / "a" / "b" / "c.txt").read_bytes() == b"data"


def test_symlink_to_a_directory_outside_the_root_is_refused(
    store: LocalFsProvider, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (root / "link").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ConnectorConfigError, match="outside the storage root"):
        store.get("link/secret.txt")
    with pytest.raises(ConnectorConfigError):
        store.put("link/new.txt", b"x")
    with pytest.raises(ConnectorConfigError):
        store.list("link/")
    assert not (outside / "new.txt").exists()
    assert [i.path for i in store.list()] == []


def test_symlinked_file_pointing_outside_is_refused_and_not_listed(
    store: LocalFsProvider, root: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    (root / "leak.txt").symlink_to(secret)

    with pytest.raises(ConnectorConfigError):
        store.get("leak.txt")
    with pytest.raises(ConnectorConfigError):
        store.put("leak.txt", b"overwrite")
    assert secret.read_bytes() == b"secret"
    assert store.list() == []


def test_symlink_inside_the_root_is_followed(store: LocalFsProvider, root: Path) -> None:
    store.put("real/data.txt", b"inside")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert store.get("alias/data.txt") == b"inside"


@pytest.mark.parametrize("path", ["", "/", ".", "a\\b.txt", "c:/windows.txt"])
def test_malformed_paths_are_refused(store: LocalFsProvider, path: str) -> None:
    with pytest.raises(ConnectorConfigError):
        store.put(path, b"x")


def test_a_directory_is_not_an_object(store: LocalFsProvider) -> None:
    store.put("dir/file.txt", b"x")
    with pytest.raises(ConnectorNotFoundError):
        store.get("dir")
    with pytest.raises(PermanentError, match="directory"):
        store.put("dir", b"x")


async def test_a_trailing_slash_is_refused_with_a_clear_reason(
    store: LocalFsProvider, root: Path
) -> None:
    """Before, put_object of "dir1/" was delivered and stored the file "dir1"."""
    envelope = Envelope(str(ULID()), "c-fs", "put_object", {"path": "dir1/", "content": "x"})
    outcome = await store.deliver(envelope)
    assert isinstance(outcome, Permanent)
    assert "'dir1/' ends in '/' and names a folder" in outcome.message
    assert list(root.iterdir()) == []


def test_an_object_cannot_also_be_a_folder(store: LocalFsProvider) -> None:
    store.put("file.txt", b"x")
    with pytest.raises(PermanentError, match="conflicts"):
        store.put("file.txt/child.txt", b"y")


@pytest.mark.parametrize("path", ["x" * 300, "dir/" + "y" * 300 + "/obj.txt"])
async def test_a_name_too_long_for_the_filesystem_is_dead_on_the_first_attempt(
    store: LocalFsProvider, root: Path, path: str
) -> None:
    """Before, ENAMETOOLONG was a TransientError, so the outbox retried a name that can
    never be written until its attempts ran out."""
    outcome = await store.deliver(
        Envelope(str(ULID()), "fs", "put_object", {"path": path, "content": "x"})
    )
    assert isinstance(outcome, Permanent), outcome
    assert "too long" in outcome.message
    for read in (store.get, store.stat, store.delete):
        with pytest.raises(PermanentError, match="too long"):
            read(path)
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_writes_leave_no_temporary_files(store: LocalFsProvider, root: Path) -> None:
    for i in range(3):
        store.put("dir/obj.bin", bytes([i]) * 1000)
    assert sorted(p.name for p in (root / "dir").iterdir()) == ["obj.bin"]


def test_missing_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "new" / "nested" / "root"
    provider = LocalFsProvider.from_config({"root": str(root)})
    result = provider.test_connection()
    assert result.success, result.message
    assert root.is_dir()


def test_root_that_is_a_file_fails_the_connection_test(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    provider = LocalFsProvider.from_config({"root": str(not_a_dir)})

    result = provider.test_connection()

    assert not result.success
    assert "not a directory" in result.message
    assert str(not_a_dir) in result.message
    with pytest.raises(ConnectorConfigError, match="not a directory"):
        provider.open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_root_fails_the_connection_test(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        result = LocalFsProvider.from_config({"root": str(root)}).test_connection()
    finally:
        root.chmod(0o700)
    assert not result.success
    assert "not writable" in result.message


def test_root_is_required() -> None:
    with pytest.raises(ConnectorConfigError) as info:
        LocalFsProvider.from_config({})
    assert "root" in info.value.field_errors


def test_registers_as_a_supported_storage_provider() -> None:
    registry = ConnectorRegistry()
    registry.register_path("jackfield.connectors.local_fs:LocalFsProvider")
    assert registry.get("storage", "local_fs") is LocalFsProvider
    assert (LocalFsProvider.category, LocalFsProvider.tier) == ("storage", "supported")
