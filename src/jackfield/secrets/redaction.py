"""Redaction for the secrets layer: ``mask_config`` here; the value redactor and the
logging filter are the kernel's (``kernel.redaction``), re-exported."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..kernel.config import SECRET_MASK, ConfigField, get_path, set_path
from ..kernel.redaction import NO_ORGANIZATION, RedactingFilter, Redactor, redactor

__all__ = ["NO_ORGANIZATION", "RedactingFilter", "Redactor", "mask_config", "redactor"]


def mask_config(
    fields: Iterable[ConfigField], config: Mapping[str, Any], secret_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """A copy of ``config`` with every secret field's value replaced by the mask.

    ``secret_keys`` are further dotted keys to mask: params stored as secret although the
    schema does not call them so (their sender marked them ``secret``); the schema alone
    would show those in plaintext."""
    masked: dict[str, Any] = _copy(config)
    keys = [field.key for field in fields if field.secret] + list(secret_keys)
    for key in keys:
        if get_path(masked, key) not in (None, ""):
            set_path(masked, key, SECRET_MASK)
    return masked


def _copy(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in value.items()}
