"""Secrets at rest: envelope encryption, key handling and rotation support, redaction."""

from .cipher import SecretBox
from .keys import Keyring, MasterKey, SecretKeyError, load_keyring, write_key_file
from .redaction import RedactingFilter, Redactor, mask_config, redactor

__all__ = [
    "Keyring",
    "MasterKey",
    "RedactingFilter",
    "Redactor",
    "SecretBox",
    "SecretKeyError",
    "load_keyring",
    "mask_config",
    "redactor",
    "write_key_file",
]
