"""Settings from the environment (prefix ``JACKFIELD_``), see CONTRACT.md."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JACKFIELD_", extra="ignore")

    database_url: str = "sqlite:///./.jackfield/jackfield.db"
    data_dir: Path = Path("./.jackfield")
    secret_key: SecretStr | None = None
    secret_key_fallbacks: SecretStr = SecretStr("")
    public_url: str = "http://127.0.0.1:8000"
    egress_allowlist: str = ""
    admin_password: SecretStr | None = None
    log_format: str = "console"

    # The built-in email adapter (used when an organization has no default email connector).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "jackfield@localhost"
    smtp_starttls: bool = False
    smtp_tls: bool = False

    @property
    def fallback_keys(self) -> list[str]:
        raw = self.secret_key_fallbacks.get_secret_value()
        return [k.strip() for k in raw.split(",") if k.strip()]
