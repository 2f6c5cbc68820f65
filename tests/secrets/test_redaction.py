"""The process-wide redactor masks a registered secret in every form text gives it,
in the scope of the organization that owns it."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote, quote_plus, urlencode

import pytest

from jackfield.secrets import RedactingFilter, Redactor, redactor

KEY = 'k3y/with+special&chars= "and" ünïcode'


@pytest.mark.parametrize(
    "text",
    [
        f"GET http://api.example.com/v1?{urlencode({'api_key': KEY})}",  # a query string
        f"GET http://api.example.com/keys/{quote(KEY, safe='')}",  # a path segment
        f"GET http://api.example.com/keys/{quote(KEY)}",
        f"GET http://api.example.com/?key={quote_plus(KEY)}",
        json.dumps({"error": "invalid key", "key": KEY}),  # a vendor's JSON error
        f"raw {KEY} raw",
    ],
)
def test_a_secret_is_masked_raw_percent_encoded_and_json_escaped(text):
    mine = Redactor()
    mine.add(KEY)
    redacted = mine.redact(text)
    assert "k3y" not in redacted and "********" in redacted


def test_log_lines_do_not_carry_a_url_encoded_secret():
    """As httpx logs every request: ``HTTP Request: GET <url with its query>``."""
    redactor.add(KEY)
    url = f"http://127.0.0.1:8899/bad?{urlencode({'api_key': KEY})}"
    record = logging.LogRecord(
        "httpx2", logging.INFO, __file__, 1, "HTTP Request: GET %s", (url,), None
    )
    RedactingFilter().filter(record)
    assert "k3y" not in record.getMessage() and "api_key=********" in record.getMessage()


def test_an_organizations_text_masks_its_own_secrets_and_logs_mask_every_one():
    mine = Redactor()
    mine.add("acme-secret", org="acme")
    mine.add("globex-secret", org="globex")
    mine.add("no-one-s-secret")  # known to no organization: masked everywhere
    text = "acme-secret globex-secret no-one-s-secret"
    assert mine.redact(text, org="acme") == "******** globex-secret ********"
    assert mine.redact_obj({"e": [text]}, org="globex") == {"e": ["acme-secret ******** ********"]}
    assert mine.redact(text) == "******** ******** ********"  # logs, the CLI
    assert mine.redact(text, org="initech") == "acme-secret globex-secret ********"


def test_text_cut_to_a_length_is_masked_before_it_is_cut():
    """A secret across the cut must not leave its first characters in the text."""
    mine = Redactor()
    mine.add("s3cr3t-value", org="acme")
    for pad in range(10, 24):
        shown = mine.redact("x" * pad + "s3cr3t-value", org="acme", limit=20)
        assert len(shown) <= 20 and "s3c" not in shown, shown
