"""One redaction layer: secret values never reach logs, errors or audit records.

The service registers every secret it decrypts (and every secret it is given) with the
process-wide ``redactor``; a logging filter and ``redact()`` replace them with the mask.
Masking by value also covers secrets echoed back inside vendor error messages, in each
form a secret takes in text (``kernel.secret_text``: percent-encoded, JSON-escaped).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from ..kernel.config import SECRET_MASK, ConfigField, get_path, set_path
from ..kernel.secret_text import secret_forms

_MIN_SECRET_LENGTH = 4


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None  # every value, longest first
        self._lock = threading.Lock()

    def add(self, *values: object) -> None:
        with self._lock:
            for value in values:
                if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
                    forms = secret_forms(value)
                    if not forms <= self._values:
                        self._values.update(forms)
                        self._pattern = None

    def redact(self, text: str) -> str:
        """``text`` with every registered value masked: one regex pass, however many
        secrets the process knows (it also masks stored results, once per delivery)."""
        pattern = self._pattern
        if pattern is None:
            if not self._values:
                return text
            with self._lock:
                ordered = sorted(self._values, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(map(re.escape, ordered)))
        return pattern.sub(SECRET_MASK, text)

    def redact_obj(self, value: Any) -> Any:
        """Redact strings anywhere inside dicts/lists (for audit details, error bodies
        and delivery results)."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {k: self.redact_obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_obj(v) for v in value]
        return value


redactor = Redactor()


class RedactingFilter(logging.Filter):
    """Masks registered secrets in a record's final message (args included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redactor.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redactor.redact(exc_text)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def mask_config(fields: Iterable[ConfigField], config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with every secret field's value replaced by the mask."""
    masked: dict[str, Any] = _copy(config)
    for field in fields:
        if field.secret and get_path(masked, field.key) not in (None, ""):
            set_path(masked, field.key, SECRET_MASK)
    return masked


def _copy(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in value.items()}
