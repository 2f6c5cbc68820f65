"""Local filesystem storage: objects are files under one root directory.

This is the built-in storage adapter used when an organization configured no default,
so it must be safe with untrusted paths: every path is relative to the root, and
absolute paths, ``..`` segments and symlinks that lead outside the root are refused with
``ConnectorConfigError`` before anything touches the disk. Writes are atomic (a temp
file in the target directory, fsync, ``os.replace``) so a reader never sees half an
object, even after a crash. Methods are sync; the framework runs them in worker threads.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

from jackfield.kernel import (
    ConfigField,
    ConnectionTestResult,
    ConnectorConfigError,
    ConnectorNotFoundError,
    FieldType,
    ObjectInfo,
    PermanentError,
    StorageProvider,
    Tier,
    TransientError,
)

TEMP_PREFIX = ".jackfield-tmp-"
"""Names of in-progress writes; never listed, and refused as object names."""

CALLER_ERRNOS: dict[int, str] = {
    errno.ENAMETOOLONG: "is too long for the filesystem (a name or the whole path)",
    errno.EISDIR: "is a directory of other objects",
    errno.EINVAL: "is not a valid name on this filesystem",
    errno.EFBIG: "is larger than the filesystem allows for one file",
}
"""Errors caused by the request itself: trying again fails the same way, so they are
permanent. Anything else (a full disk, an I/O error, a stale mount) may pass and stays
transient; a missing parent (``ENOTDIR``/``ENOENT``) already means "no object"."""


class LocalFsProvider(StorageProvider):
    """Objects under ``root``, addressed by ``/``-separated relative paths."""

    provider_type: ClassVar[str] = "local_fs"
    display_name: ClassVar[str] = "Local filesystem"
    tier: ClassVar[Tier] = Tier.SUPPORTED

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.root = Path(str(config["root"])).expanduser().resolve()

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [
            ConfigField(
                "root",
                "Root directory",
                required=True,
                type=FieldType.DIRECTORY,
                help="Directory that holds the objects; created if missing.",
            )
        ]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """Validate the config and create the root if missing (problems surface in
        ``test_connection``/``open`` rather than here, so a broken connector can still be
        built and report what is wrong)."""
        provider = super().from_config(config)
        provider._prepare_root()
        return provider

    # -- life cycle ---------------------------------------------------------------
    def test_connection(self) -> ConnectionTestResult:
        problem = self._prepare_root()
        if problem:
            return ConnectionTestResult(False, problem, {"root": str(self.root)})
        return ConnectionTestResult(
            True, f"{self.root} is a writable directory", {"root": str(self.root)}
        )

    def open(self) -> None:
        problem = self._prepare_root()
        if problem:
            raise ConnectorConfigError(problem, field_errors={"root": problem}, operation="open")

    def _prepare_root(self) -> str | None:
        """Create the root if missing; return why it is unusable, or ``None``."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            return f"root {self.root} exists but is not a directory"
        except OSError as exc:
            return f"cannot create root directory {self.root}: {exc.strerror or exc}"
        if not self.root.is_dir():
            return f"root {self.root} exists but is not a directory"
        if not os.access(self.root, os.W_OK | os.X_OK):
            return f"root directory {self.root} is not writable by this process"
        return None

    # -- storage interface --------------------------------------------------------
    def put(self, path: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        """Write ``data`` atomically; the local filesystem does not keep ``content_type``."""
        target = self._object(path, "put")
        with _translate("put", path):
            if target.is_dir():
                raise PermanentError(f"{path!r} is a directory of other objects", operation="put")
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp_name, target)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
            _fsync_dir(target.parent)
            return self._info(target)

    def get(self, path: str) -> bytes:
        target = self._object(path, "get")
        with _translate("get", path):
            self._require_file(path, target, "get")
            return target.read_bytes()

    def delete(self, path: str) -> None:
        target = self._object(path, "delete")
        with _translate("delete", path):
            self._require_file(path, target, "delete")
            target.unlink()

    def stat(self, path: str) -> ObjectInfo:
        target = self._object(path, "stat")
        with _translate("stat", path):
            self._require_file(path, target, "stat")
            return self._info(target)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose path starts with ``prefix`` (a plain string prefix, as in
        object stores: ``"docs/"`` matches ``docs/a``; ``"do"`` matches it too)."""
        if prefix:
            self._resolve(prefix, "list")  # refuse escapes; the prefix need not exist
        start = self.root / prefix.rpartition("/")[0]
        items: list[ObjectInfo] = []
        with _translate("list", prefix):
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames.sort()
                base = Path(dirpath)
                for name in filenames:
                    if name.startswith(TEMP_PREFIX):
                        continue
                    full = base / name
                    rel = full.relative_to(self.root).as_posix()
                    if rel.startswith(prefix) and self._inside(full) and full.is_file():
                        items.append(self._info(full))
        return sorted(items, key=lambda info: info.path)

    # -- helpers ------------------------------------------------------------------
    def _object(self, path: str, operation: str) -> Path:
        """The file of one object. A path ending in '/' (or '/.') names a folder, as a
        prefix does in ``list``; it is refused rather than shortened, since "dir1/" was
        stored as the file "dir1" and then read back or deleted under either name."""
        if isinstance(path, str) and path.split("/")[-1] in ("", ".") and path.strip("/."):
            raise ConnectorConfigError(
                f"object path {path!r} ends in '/' and names a folder, not an object; "
                "give a file name such as 'folder/name.txt'",
                operation=operation,
            )
        return self._resolve(path, operation)

    def _resolve(self, path: str, operation: str) -> Path:
        """Map a relative object path onto the filesystem, refusing anything that leaves
        the root: absolute paths, ``..``, backslashes and symlinks pointing outside."""
        parts = [p for p in path.split("/") if p not in ("", ".")] if isinstance(path, str) else []
        if not parts:
            raise ConnectorConfigError(
                f"object path {path!r} is empty; give a path such as 'folder/name.txt'",
                operation=operation,
            )
        problem = None
        if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
            problem = "must be relative to the storage root"
        elif "\\" in path or "\x00" in path:
            problem = "must use '/' as separator and contain no NUL"
        elif ".." in parts:
            problem = "must not contain '..'"
        elif parts[-1].startswith(TEMP_PREFIX):
            problem = f"must not start with the reserved prefix {TEMP_PREFIX!r}"
        target = self.root.joinpath(*parts)
        if problem is None and not self._inside(target):
            problem = "leads outside the storage root through a symbolic link"
        if problem:
            raise ConnectorConfigError(f"object path {path!r} {problem}", operation=operation)
        return target

    def _inside(self, target: Path) -> bool:
        try:
            return target.resolve().is_relative_to(self.root)
        except (OSError, RuntimeError):  # a symlink loop never leads anywhere usable
            return False

    @staticmethod
    def _require_file(path: str, target: Path, operation: str) -> None:
        if not target.is_file():
            raise ConnectorNotFoundError(f"no object at {path!r}", operation=operation)

    def _info(self, target: Path) -> ObjectInfo:
        st = target.stat()
        return ObjectInfo(
            path=target.relative_to(self.root).as_posix(),
            size=st.st_size,
            modified_at=datetime.fromtimestamp(st.st_mtime, UTC),
            content_type=mimetypes.guess_type(target.name)[0],
        )


@contextmanager
def _translate(operation: str, path: str) -> Iterator[None]:
    """Turn filesystem errors into the kernel's error tree (``raise ... from exc``)."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise ConnectorNotFoundError(f"no object at {path!r}", operation=operation) from exc
    except FileExistsError as exc:
        raise PermanentError(
            f"{path!r} conflicts with an existing object (a file cannot also be a folder)",
            operation=operation,
        ) from exc
    except PermissionError as exc:
        raise PermanentError(
            f"permission denied for {path!r}: {exc.strerror}",
            operation=operation,
            remediation="Check the ownership and mode of the storage root.",
        ) from exc
    except OSError as exc:
        reason = CALLER_ERRNOS.get(exc.errno or 0)
        if reason is not None:
            raise PermanentError(f"object path {path!r} {reason}", operation=operation) from exc
        raise TransientError(
            f"filesystem error on {path!r}: {exc.strerror or exc}", operation=operation
        ) from exc


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
