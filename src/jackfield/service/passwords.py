"""Password and API-token hashing (stdlib scrypt and SHA-256; no plaintext is stored)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1
TOKEN_PREFIX = "jf_"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return "$".join(["scrypt", str(_N), str(_R), str(_P), *encoded])


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` is the one ``stored`` was made from. Without a stored hash
    (no such user, an inactive one, one without a password) it checks against a fixed
    hash and answers ``False``: a login costs the same scrypt either way, so the time it
    takes does not tell which emails have accounts."""
    if not stored or not stored.startswith("scrypt$"):
        verify_password(password, _unmatchable_hash())
        return False
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(candidate, base64.b64decode(digest))


@functools.cache
def _unmatchable_hash() -> str:
    """The hash of a random password no one knows, made once (on the first login that
    needs it, not at import: scrypt takes a while by design)."""
    return hash_password(secrets.token_urlsafe(32))


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
