"""Envelope encryption of secret values at rest (AES-256-GCM).

A stored value reads ``jf1:<key id>:<base64(nonce || ciphertext)>``. The associated data
binds it to its key id and a context (``<connector id>:<param key>``), so a ciphertext
copied onto another connector or param does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keys import Keyring, SecretKeyError

PREFIX = "jf1"
_CHECK_CONTEXT = "jackfield:key-check"
_CHECK_PLAINTEXT = "jackfield key check"


class SecretBox:
    """Encrypts and decrypts under a keyring.

    With the generated key file (``key_file``), ``jackfield keys rotate`` may replace
    the file while a ``serve`` runs: the box then re-reads it (``load``) before it
    encrypts, and when a secret names a key it does not hold. Otherwise a running server
    went on encrypting new secrets under the key the rotation had just retired and
    deleted -- secrets nobody could decrypt again.
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        key_file: Path | None = None,
        load: Callable[[], Keyring] | None = None,
    ) -> None:
        self.keyring = keyring
        self._key_file, self._load = key_file, load
        self._seen = _stamp(key_file)

    @staticmethod
    def is_encrypted(value: str | None) -> bool:
        return isinstance(value, str) and value.startswith(PREFIX + ":")

    def encrypt(self, plaintext: str, *, context: str) -> str:
        self._follow_key_file()
        key = self.keyring.current
        nonce = os.urandom(12)
        sealed = AESGCM(key.raw).encrypt(nonce, plaintext.encode(), _aad(key.key_id, context))
        return f"{PREFIX}:{key.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, context: str) -> str:
        try:
            prefix, key_id, body = token.split(":", 2)
            blob = base64.b64decode(body, validate=True)
        except (ValueError, binascii.Error):
            raise SecretKeyError("a stored secret is malformed") from None
        if prefix != PREFIX or len(blob) < 13:
            raise SecretKeyError("a stored secret is malformed")
        key = self.keyring.find(key_id)
        if key is None and self._follow_key_file():
            key = self.keyring.find(key_id)
        if key is None:
            raise SecretKeyError(
                f"a secret is encrypted with key {key_id}, which is not configured",
                remediation="Set JACKFIELD_SECRET_KEY to that key, or list it in "
                "JACKFIELD_SECRET_KEY_FALLBACKS and run 'jackfield keys rotate'.",
            )
        try:
            plain = AESGCM(key.raw).decrypt(blob[:12], blob[12:], _aad(key_id, context))
        except InvalidTag:
            raise SecretKeyError(f"a secret does not decrypt in its context {context!r}") from None
        return plain.decode()

    def _follow_key_file(self) -> bool:
        """Re-read the keyring if the key file changed since last read; whether it did."""
        if self._load is None:
            return False
        stamp = _stamp(self._key_file)
        if stamp == self._seen:
            return False
        self.keyring, self._seen = self._load(), stamp
        return True

    def needs_rotation(self, token: str) -> bool:
        return token.split(":", 2)[1] != self.keyring.current.key_id

    # -- the key check refuses to start with the wrong key ---------------------------
    def make_check(self) -> str:
        return self.encrypt(_CHECK_PLAINTEXT, context=_CHECK_CONTEXT)

    def verify_check(self, token: str) -> None:
        try:
            ok = self.decrypt(token, context=_CHECK_CONTEXT) == _CHECK_PLAINTEXT
        except SecretKeyError:
            ok = False
        if not ok:
            raise SecretKeyError(
                "the master key does not match the one this database was encrypted with",
                remediation="Set JACKFIELD_SECRET_KEY to the original key (or restore "
                "DATA_DIR/secret.key); refusing to start so no secret is lost.",
            )


def _stamp(path: Path | None) -> tuple[int, int] | None:
    """What tells a replaced file from the one read (``os.replace`` makes a new inode)."""
    if path is None:
        return None
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_ino, found.st_mtime_ns


def _aad(key_id: str, context: str) -> bytes:
    return f"{PREFIX}|{key_id}|{context}".encode()
