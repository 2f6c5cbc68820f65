"""Settings that parse are the ones operators write (the refusals: tests/cli/test_serve.py)."""

import pytest
from pydantic import ValidationError

from jackfield.settings import Settings


def test_allowlists_and_public_urls_operators_write_are_accepted():
    settings = Settings(
        egress_allowlist="10.0.0.0/8, api.example.com,::1,[fd00::1],192.168.1.7,my_host.local.,bücher.example",
        public_url="https://jackfield.example:8443/base/",
        log_format="json",
        smtp_port=587,
    )
    assert settings.egress_allowlist.startswith("10.0.0.0/8")


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/33", "300.1.1.1", "fd00::zz", "a b", "-x.example", "host:8080"]
)
def test_an_allowlist_entry_that_would_allow_nothing_is_refused(entry):
    with pytest.raises(ValidationError, match="egress_allowlist"):
        Settings(egress_allowlist=f"api.example.com,{entry}")


def test_the_built_in_email_adapter_takes_one_tls_mode():
    with pytest.raises(ValidationError, match="not both"):
        Settings(smtp_tls=True, smtp_starttls=True)


@pytest.mark.parametrize("hours", ["inf", "nan", "1e8", "20000000", "-1"])
def test_a_retention_no_date_can_hold_is_refused(hours):
    """``inf`` or ``1e8`` hours reach back before the year 1: each pruning pass failed,
    and pruning stopped for good (the inbox's too) without a word."""
    for name in ("outbox_retention_hours", "inbox_retention_hours"):
        with pytest.raises(ValidationError, match=name):
            Settings(**{name: hours})
    assert Settings(outbox_retention_hours=876_000, inbox_retention_hours=0)
