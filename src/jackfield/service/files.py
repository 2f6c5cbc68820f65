"""Content of file params (credentials JSON, certificates) kept under DATA_DIR/files.

The database row keeps only a reference; a secret file's content is encrypted like any
other secret value before it touches the disk.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from jackfield.kernel.private_paths import make_private_dir


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(self, connector_id: str, data: bytes) -> str:
        """Store ``data``; returns the reference to keep in the param row."""
        ref = f"{connector_id}/{uuid.uuid4().hex}"
        path = self._path(ref)
        make_private_dir(path.parent)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return ref

    def read(self, ref: str) -> bytes:
        return self._path(ref).read_bytes()

    def delete(self, ref: str) -> None:
        self._path(ref).unlink(missing_ok=True)

    def delete_connector(self, connector_id: str) -> None:
        shutil.rmtree(self._path(connector_id), ignore_errors=True)

    def _path(self, ref: str) -> Path:
        path = (self.root / ref).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"file reference {ref!r} escapes the file store")
        return path
