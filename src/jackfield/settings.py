"""Settings from the environment (prefix ``JACKFIELD_``), see CONTRACT.md."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .kernel.inbound import MAX_REPLAY_WINDOW_SECONDS

MAX_RETENTION_HOURS = 876_000
"""A retention of at most 100 years: a longer one (``inf``, ``1e8``) reaches back before
the year 1, which no date can hold, and would stop every pruning pass. ``0`` keeps rows
for ever."""
RetentionHours = Annotated[float, Field(ge=0, le=MAX_RETENTION_HOURS, allow_inf_nan=False)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JACKFIELD_", extra="ignore")

    database_url: str = "sqlite:///./.jackfield/jackfield.db"
    data_dir: Path = Path("./.jackfield")
    secret_key: SecretStr | None = None
    secret_key_fallbacks: SecretStr = SecretStr("")
    public_url: str = "http://127.0.0.1:8000"
    egress_allowlist: str = ""
    # directories under which connectors' directories (local_fs root) may lie; none: the
    # server's files are not an organization admin's to choose (service.local_paths)
    directory_allowlist: str = ""
    admin_password: SecretStr | None = None
    log_format: Literal["console", "json"] = "console"

    # The built-in email adapter (used when an organization has no default email connector).
    smtp_host: str = "127.0.0.1"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "jackfield@localhost"
    smtp_starttls: bool = False
    smtp_tls: bool = False

    @property
    def allowed_directories(self) -> list[Path]:
        return [Path(p.strip()) for p in self.directory_allowlist.split(",") if p.strip()]

    @property
    def fallback_keys(self) -> list[str]:
        raw = self.secret_key_fallbacks.get_secret_value()
        return [k.strip() for k in raw.split(",") if k.strip()]

    @property
    def secret_values(self) -> list[str]:
        """Every secret these settings hold, for the redactor: the built-in email adapter
        hands the SMTP password to a provider, and no log line may show it."""
        held = [self.secret_key, self.admin_password, self.smtp_password]
        return [s.get_secret_value() for s in held if s is not None] + self.fallback_keys

    # -- runtime: outbox and supervisor (timings are settings so tests can run fast) --
    # (a 0 where it makes no sense is refused: an interval of 0 spun a core)
    runtime_enabled: bool = True  # False: serve the API only, deliver nothing on this node
    outbox_batch_size: PositiveInt = 256  # messages per claim / ack transaction
    outbox_max_in_flight: PositiveInt = 2048  # claimed and not yet acknowledged, per node
    # concurrent deliveries per connector (param runtime.concurrency)
    outbox_concurrency: PositiveInt = 16
    # a claim's lease, renewed while a delivery runs; a dead node's messages return after it
    outbox_lease_seconds: PositiveFloat = 60.0
    # a delivery still running this long is given up (and retried): a call that never returns
    outbox_delivery_timeout_seconds: PositiveFloat = 3600.0
    outbox_poll_seconds: PositiveFloat = 1.0  # idle re-check for work enqueued by other nodes
    outbox_retry_base_seconds: PositiveFloat = 1.0  # first retry delay (param retry.base_seconds)
    outbox_retry_max_seconds: PositiveFloat = 300.0  # retry delay cap (param retry.max_seconds)
    outbox_max_attempts: PositiveInt = 10  # then dead (param retry.max_attempts)
    outbox_crash_limit: PositiveInt = 3  # a message that crashed its connector this often: dead
    supervisor_backoff_base_seconds: PositiveFloat = 1.0  # first restart delay after a crash
    supervisor_backoff_max_seconds: PositiveFloat = 60.0
    # this long without a crash resets backoff
    supervisor_healthy_reset_seconds: PositiveFloat = 600.0
    supervisor_crash_limit: NonNegativeInt = 5  # more faults than this in the window: failed (a
    # message that crashed its unit repeatedly is one fault)
    supervisor_crash_window_seconds: PositiveFloat = 300.0
    # reconcile connectors and pick up restart requests
    supervisor_poll_seconds: PositiveFloat = 2.0
    # in-flight deliveries may finish this long
    runtime_shutdown_grace_seconds: NonNegativeFloat = 10.0
    # retention (0: keep for ever): delivered/discarded messages, dispatched events
    outbox_retention_hours: RetentionHours = 168.0
    inbox_retention_hours: RetentionHours = 168.0
    retention_interval_seconds: PositiveFloat = 600.0  # how often each node prunes

    @field_validator("public_url")
    @classmethod
    def _public_url_is_a_base_url(cls, url: str) -> str:
        """OAuth redirect URIs and webhook URLs are built on it: a typo would only show
        when a provider refuses the redirect or a sender cannot reach the hook."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://jackfield.example")
        if parts.query or parts.fragment:
            raise ValueError("must be a base URL, without ?query or #fragment")
        return url.strip()

    @field_validator("egress_allowlist")
    @classmethod
    def _allowlist_entries_parse(cls, allowlist: str) -> str:
        """An entry that is neither a network nor a host name would allow nothing, and
        the operator would not know why a connector is still refused."""
        for raw in allowlist.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                ipaddress.ip_network(entry.strip("[]"), strict=False)
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or _DOTTED_NUMBERS.match(entry):
                raise ValueError(f"{entry!r} is not an IP address or CIDR network")
            if not _HOST_NAME.match(entry):  # (international names are the guard's to match)
                raise ValueError(f"{entry!r} is not a host name, IP address or CIDR network")
        return allowlist

    @field_validator("smtp_tls")
    @classmethod
    def _one_smtp_tls_mode(cls, tls: bool, info: ValidationInfo) -> bool:
        """The built-in email adapter refuses both at its first use: say so at start."""
        if tls and info.data.get("smtp_starttls"):
            raise ValueError("set JACKFIELD_SMTP_TLS or JACKFIELD_SMTP_STARTTLS, not both")
        return tls

    @field_validator("inbox_retention_hours")
    @classmethod
    def _inbox_outlasts_replay_window(cls, hours: float) -> float:
        """The inbox's ids deduplicate webhooks; pruned sooner than a webhook may be
        accepted, a captured request could be replayed and stored a second time."""
        floor = MAX_REPLAY_WINDOW_SECONDS / 3600
        if hours != 0 and hours < floor:
            raise ValueError(
                f"must be 0 (keep for ever) or at least {floor:g} hours: the inbox "
                "remembers webhook ids for its retention, and a webhook may be accepted "
                f"up to {floor:g} hours after it was signed"
            )
        return hours


_DOTTED_NUMBERS = re.compile(r"^[0-9.]+$")
_HOST_NAME = re.compile(r"^[^\s/:@!?#*\[\]-][^\s/:@!?#*\[\]]*$")
