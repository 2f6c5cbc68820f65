"""One redaction layer: secret values never reach logs, errors or audit records.

The service registers every secret it decrypts (and every secret it is given) with the
process-wide ``redactor``, under the connector's organization; ``redact()`` replaces
them with the mask, and so does the filter of every Jackfield logger (``get_logger``).
Masking by value also covers secrets echoed back inside vendor error messages, in each
form a secret takes in text (``secret_text``: percent-encoded, JSON-escaped).

It lives in the kernel so that every layer's loggers can carry the filter; the secrets
package (``secrets.redaction``) re-exports it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

from .config import SECRET_MASK
from .secret_text import cut, secret_forms

_MIN_SECRET_LENGTH = 4
_EVERY = object()  # the scope of every organization's values
NO_ORGANIZATION = ""
"""The scope of a caller of no organization (a webhook sender): only values that belong
to no organization are masked for it."""
PROCESS_SETTINGS = "settings"
"""The scope of the process's own secrets (its settings: the SMTP password of the built-in
email, the master keys, the admin password): masked where every value is (logs, the
CLI), not in an organization's text, where a member could test guesses of them through
any error that quotes its input (organization ids are UUIDs, never this name)."""


class Redactor:
    """Secret values by the organization they belong to.

    ``redact(text)`` masks every value the process knows: for logs and the CLI, which
    only operators see. ``redact(text, org=...)`` masks that organization's values (and
    values of no organization): for text an organization's members see. Masking another
    organization's values there would be an oracle: a member could send guesses through
    any error that quotes its input, and see which one comes back masked.
    """

    def __init__(self) -> None:
        self._values: dict[str | None, set[str]] = {}  # organization (None: any) -> forms
        self._patterns: dict[object, re.Pattern[str] | None] = {}  # scope -> one regex
        self._lock = threading.Lock()

    def add(self, *values: object, org: str | None = None) -> None:
        with self._lock:
            known = self._values.setdefault(org, set())
            for value in values:
                if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
                    forms = secret_forms(value)
                    if not forms <= known:
                        known.update(forms)
                        self._patterns.clear()

    def redact(self, text: str, *, org: str | None = None, limit: int | None = None) -> str:
        """``text`` with the values of ``org`` (of every organization when ``None``)
        masked: one regex pass, however many secrets the process knows (it also masks
        stored results, once per delivery). Then cut to ``limit`` characters: masked
        first, since a secret cut in two is no longer found."""
        pattern = self._pattern(org)
        return cut(pattern.sub(SECRET_MASK, text) if pattern else text, limit)

    def _pattern(self, org: str | None) -> re.Pattern[str] | None:
        """One regex of the scope's values, longest first; ``None`` when it has none."""
        scope: object = _EVERY if org is None else org
        try:
            return self._patterns[scope]
        except KeyError:
            pass
        with self._lock:
            if org is None:
                values = set().union(*self._values.values())
            else:
                values = self._values.get(org, set()) | self._values.get(None, set())
            ordered = sorted(values, key=len, reverse=True)
            pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            self._patterns[scope] = pattern
            return pattern

    def redact_obj(self, value: Any, *, org: str | None = None) -> Any:
        """Redact strings anywhere inside dicts/lists (for audit details, error bodies
        and delivery results)."""
        if self._pattern(org) is None:
            return value
        if isinstance(value, str):
            return self.redact(value, org=org)
        if isinstance(value, Mapping):
            return {k: self.redact_obj(v, org=org) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_obj(v, org=org) for v in value]
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


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the redacting filter on the logger itself, so a
    record is masked before any handler sees it: an embedding application's handlers,
    or Python's last-resort stderr handler, as well as the CLI's."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
