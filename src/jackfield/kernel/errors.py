"""The error tree shared by providers, the integration toolkit and the service layer.

Every error carries a stable ``code``, a user-facing ``message``, a ``remediation`` hint,
the ``operation`` that failed and a ``retry_class`` that tells the runtime whether trying
again can help. Provider code raises these; ``jackfield.integration`` translates HTTP
status codes and vendor exceptions into them at the boundary (``raise ... from exc``).

::

    JackfieldError
    ├── ConnectorError
    │   ├── ConnectorNotFoundError        unknown provider / connector      (retry: never)
    │   ├── ConnectorConfigError          invalid config, with field errors (retry: never)
    │   ├── ConnectionFailedError         cannot reach the system           (retry: transient)
    │   ├── ConnectorNotSupportedError    operation or capability missing   (retry: never)
    │   ├── AuthError                     credentials refused               (retry: auth)
    │   ├── RateLimitedError(retry_after) throttled by the system           (retry: rate_limited)
    │   ├── TransientError                temporary failure                 (retry: transient)
    │   └── PermanentError                will fail again the same way      (retry: never)
    ├── AuthenticationError               no or bad credentials (service)
    ├── PermissionDeniedError             role may not do this (service)
    └── ConflictError                     state does not allow this (service)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RetryClass(StrEnum):
    """Whether, and how, an operation that raised may be tried again."""

    NEVER = "never"
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"


class JackfieldError(Exception):
    """Base of every error Jackfield raises on purpose."""

    code: str = "error"
    retry_class: RetryClass = RetryClass.NEVER
    default_remediation: str = ""

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        remediation: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.remediation = remediation if remediation is not None else self.default_remediation
        self.details: dict[str, Any] = details or {}

    @property
    def retryable(self) -> bool:
        return self.retry_class is not RetryClass.NEVER

    def to_dict(self) -> dict[str, Any]:
        """The public error body: code, message, remediation (never a traceback)."""
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "remediation": self.remediation,
        }
        if self.operation:
            body["operation"] = self.operation
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        prefix = f"{self.operation}: " if self.operation else ""
        return f"{prefix}{self.message}"


class ConnectorError(JackfieldError):
    code = "connector_error"


class ConnectorNotFoundError(ConnectorError):
    code = "not_found"
    default_remediation = "Check the id or name: it may be mistyped, or was deleted."


class ConnectorConfigError(ConnectorError):
    """Invalid configuration. ``field_errors`` maps a dot-notation key to its problem."""

    code = "invalid_config"
    default_remediation = "Correct the connector's parameters and try again."

    def __init__(
        self,
        message: str,
        *,
        field_errors: dict[str, str] | None = None,
        operation: str | None = None,
        remediation: str | None = None,
    ) -> None:
        self.field_errors = dict(field_errors or {})
        details = {"fields": self.field_errors} if self.field_errors else None
        super().__init__(message, operation=operation, remediation=remediation, details=details)

    @classmethod
    def for_fields(cls, field_errors: dict[str, str]) -> ConnectorConfigError:
        """One error listing every field's problem (what config validation raises)."""
        summary = "; ".join(f"{key}: {msg}" for key, msg in sorted(field_errors.items()))
        return cls(f"invalid configuration ({summary})", field_errors=field_errors)


class ConnectionFailedError(ConnectorError):
    code = "connection_failed"
    retry_class = RetryClass.TRANSIENT
    default_remediation = "Check the host, port and network path to the external system."


class ConnectorNotSupportedError(ConnectorError):
    code = "not_supported"


class AuthError(ConnectorError):
    code = "auth_failed"
    retry_class = RetryClass.AUTH
    default_remediation = "Check the credentials, or reconnect the connector."


class _RetryAfter(ConnectorError):
    """A retryable error that may say when to try again (``Retry-After``), in seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        operation: str | None = None,
        remediation: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, remediation=remediation)
        self.retry_after = retry_after


class RateLimitedError(_RetryAfter):
    code = "rate_limited"
    retry_class = RetryClass.RATE_LIMITED
    default_remediation = "Wait and retry; the system asked to slow down."


class TransientError(_RetryAfter):
    code = "transient"
    retry_class = RetryClass.TRANSIENT


class PermanentError(ConnectorError):
    code = "permanent"


class AuthenticationError(JackfieldError):
    code = "unauthenticated"
    default_remediation = "Log in, or send a valid 'Authorization: Bearer <token>' header."


class PermissionDeniedError(JackfieldError):
    code = "forbidden"
    default_remediation = "Ask an administrator of your organization."


class ConflictError(JackfieldError):
    code = "conflict"
