"""How a secret may appear in text, for the redactors (``secrets.redaction`` for logs,
errors and audit records; ``integration.errors`` for a request's own credentials).

A secret often travels in a URL or a JSON body: an API key with ``/``, ``+`` or ``=``
in a query string is percent-encoded there, and quoted back that way in an HTTP log line
or a vendor's error. Masking only the raw value would let those forms through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"


def secret_forms(value: str) -> set[str]:
    """``value`` as is, percent-encoded (in a path or a query, ``+`` for spaces or not)
    and inside a JSON string."""
    return {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
    }


def mask_secrets(text: str, secrets: Iterable[str], *, limit: int | None = None) -> str:
    """``text`` with every occurrence of each secret (in each of its forms) replaced,
    longest first: for the few credentials one request carried. Then cut to ``limit``
    characters (``cut``), never before: a cut inside a secret would leave its first
    part, which no longer matches, in the text."""
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return cut(text, limit)


def cut(text: str, limit: int | None) -> str:
    """``text`` shortened to ``limit`` characters, the last one an ellipsis. Only for text
    whose secrets are masked already: the maskers take a ``limit`` and call this."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
