"""Master keys: from ``JACKFIELD_SECRET_KEY`` or a generated key file, plus fallbacks.

A key is 32 random bytes, written as URL-safe or standard base64. Its id (the first 8 hex
digits of its SHA-256) prefixes every ciphertext, so a value names the key it needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..kernel.errors import JackfieldError
from ..kernel.private_paths import make_private_dir

KEY_FILE_NAME = "secret.key"
# a new master key can be generated; a fallback cannot: it must be the key that old
# values were written with, so telling the operator to generate one was wrong advice
GENERATE = (
    'Generate one with: python -c "import os,base64;'
    'print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
)
FALLBACK_REMEDY = (
    "Each fallback must be an earlier JACKFIELD_SECRET_KEY (base64 of 32 bytes), the one"
    " older secrets were encrypted with; separate several with commas"
)


class SecretKeyError(JackfieldError):
    """The master key is missing, malformed, or not the one the data was encrypted with."""

    code = "secret_key_error"


@dataclass(frozen=True)
class MasterKey:
    raw: bytes

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:8]

    def encoded(self) -> str:
        return base64.urlsafe_b64encode(self.raw).decode()

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(32))

    @classmethod
    def decode(
        cls, text: str, *, source: str = "JACKFIELD_SECRET_KEY", remediation: str = GENERATE
    ) -> MasterKey:
        text = text.strip()
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise SecretKeyError(f"{source} is not base64 of 32 bytes", remediation=remediation)
        return cls(raw)


@dataclass(frozen=True)
class Keyring:
    """The current key (encrypts and decrypts) and fallbacks (decrypt only)."""

    current: MasterKey
    fallbacks: tuple[MasterKey, ...] = ()

    def find(self, key_id: str) -> MasterKey | None:
        for key in (self.current, *self.fallbacks):
            if key.key_id == key_id:
                return key
        return None


def key_file_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE_NAME


def read_key_file(path: Path) -> MasterKey:
    return MasterKey.decode(path.read_text(), source=str(path))


def write_key_file(path: Path, key: MasterKey) -> None:
    """Write ``key`` to ``path`` with mode 0600, atomically."""
    make_private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")  # one per target: secret.key and .old differ
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.encoded() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_keyring(secret_key: str | None, fallbacks: list[str], data_dir: Path) -> Keyring:
    """The keyring for these settings; generates the key file on first start."""
    extra = tuple(
        MasterKey.decode(
            k,
            source=f"JACKFIELD_SECRET_KEY_FALLBACKS entry {n} of {len(fallbacks)}",
            remediation=FALLBACK_REMEDY,
        )
        for n, k in enumerate(fallbacks, 1)
    )
    if secret_key:
        return Keyring(MasterKey.decode(secret_key), extra)
    path = key_file_path(data_dir)
    if not path.exists():
        write_key_file(path, MasterKey.generate())
    previous = path.with_name(KEY_FILE_NAME + ".old")
    if previous.exists():  # a rotation that has not finished yet
        extra = (*extra, read_key_file(previous))
    return Keyring(read_key_file(path), extra)
