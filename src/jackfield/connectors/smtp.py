"""SMTP email: send through any SMTP server with ``aiosmtplib``.

This is the built-in email adapter. ``aiosmtplib`` is imported inside the methods that
need it, so discovering providers never loads a mail library. Its exceptions are
translated here, at the boundary, into the kernel's error tree so the outbox can tell a
retry (connection trouble, 4xx answers) from a dead letter (5xx answers) from a reauth
(login refused). The password never appears in an error message.
"""

from __future__ import annotations

import email.message
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from typing import TYPE_CHECKING, Any, ClassVar

from jackfield.kernel import (
    AuthError,
    ConfigField,
    ConnectionFailedError,
    ConnectionTestResult,
    ConnectorConfigError,
    ConnectorError,
    EmailMessage,
    EmailProvider,
    FieldType,
    PermanentError,
    SendResult,
    Tier,
    TransientError,
)
from jackfield.kernel.categories.email import RefusedRecipient
from jackfield.kernel.redaction import get_logger

if TYPE_CHECKING:
    import aiosmtplib

log = get_logger(__name__)

RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "reply-to", "date", "mime-version", "content-type"}
)
"""Headers built from the message fields; custom ``headers`` may not override them."""

FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
"""An RFC 5322 field name: printable US-ASCII except ':' (no space, no line break). The
``email`` package checks header values but writes a name as given, so a name holding
CRLF would smuggle whole header lines (a second From:, a Reply-To:) into the message."""

MSG_ID_LEFT = re.compile(r"[A-Za-z0-9]+")
"""An envelope id fit to be a Message-ID's left part as it is (a ULID is)."""

PAYLOAD_REMEDIATION = "Correct the message payload; it is refused before anything is sent."


class SmtpProvider(EmailProvider):
    """Email over SMTP, with optional STARTTLS, implicit TLS and login."""

    provider_type: ClassVar[str] = "smtp"
    display_name: ClassVar[str] = "SMTP"
    tier: ClassVar[Tier] = Tier.SUPPORTED

    @classmethod
    def config_schema(cls) -> list[ConfigField]:
        return [
            ConfigField(
                "host", "Host", required=True, help="SMTP server name or address.", origin=True
            ),
            # the password goes where host, port and TLS say: each is an origin field
            ConfigField("port", "Port", type=FieldType.INTEGER, default=587, origin=True),
            ConfigField("username", "Username", help="Leave empty if the server needs no login."),
            ConfigField("password", "Password", secret=True),
            ConfigField(
                "from_address",
                "From address",
                help="Sender used when a message does not name one.",
            ),
            ConfigField(
                "starttls",
                "STARTTLS",
                type=FieldType.BOOLEAN,
                default=False,
                help="Upgrade the connection with STARTTLS (usually port 587).",
                origin=True,
            ),
            ConfigField(
                "tls",
                "Implicit TLS",
                type=FieldType.BOOLEAN,
                default=False,
                help="Connect over TLS from the start (usually port 465).",
                origin=True,
            ),
            ConfigField("timeout_seconds", "Timeout (seconds)", type=FieldType.INTEGER, default=10),
        ]

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Refuse what can never connect when the connector is saved, not at Test or at
        the first delivery (where an impossible port surfaced as an OverflowError)."""
        result = super().validate_config(config)
        errors: dict[str, str] = {}
        if not 1 <= int(result["port"]) <= 65535:
            errors["port"] = "must be a TCP port number from 1 to 65535"
        if int(result["timeout_seconds"]) <= 0:
            errors["timeout_seconds"] = "must be a positive number of seconds"
        if result.get("tls") and result.get("starttls"):
            problem = "choose either implicit TLS or STARTTLS, not both"
            errors.update(tls=problem, starttls=problem)
        if errors:
            raise ConnectorConfigError.for_fields(errors)
        return result

    @property
    def _where(self) -> str:
        return f"{self.config['host']}:{self.config['port']}"

    # -- email interface ----------------------------------------------------------
    async def send(self, message: EmailMessage) -> SendResult:
        """Send one message; recipients the server refused while taking it for others
        are named in ``SendResult.refused`` with the server's code and text.

        Such a send is a success, even when some refusals are temporary (4xx): the
        outbox retries a whole envelope, so a retry would give the accepted recipients
        the message twice. A temporary refusal is marked ``temporary`` so the sender can
        send again to those addresses alone (a new envelope). When every recipient is
        refused nothing was sent, and the error is retryable only if all were 4xx.
        """
        mime, sender, recipients = self._build(message)
        async with self._session("send_email") as smtp:
            try:
                refused, _ = await smtp.send_message(mime, sender=sender, recipients=recipients)
            except ValueError as exc:  # an address aiosmtplib cannot encode safely
                raise PermanentError(
                    f"cannot send this message: {exc}", operation="send_email"
                ) from exc
        not_taken = tuple(
            RefusedRecipient(rcpt, resp.code, self._redact(resp.message))
            for rcpt, resp in refused.items()
        )
        if not_taken:
            log.warning(
                "smtp %s: message %s not accepted for %s",
                self._where,
                mime["Message-ID"],
                ", ".join(f"{r.recipient} ({r.code})" for r in not_taken),
            )
        return SendResult(message_id=str(mime["Message-ID"]), refused=not_taken)

    async def test_connection(self) -> ConnectionTestResult:
        """Connect, say EHLO, upgrade and log in as configured, then quit."""
        details: dict[str, Any] = {"host": self.config["host"], "port": self.config["port"]}
        try:
            async with self._session("test_connection"):
                pass
        except ConnectorError as exc:
            details.update(code=exc.code, remediation=exc.remediation)
            return ConnectionTestResult(False, exc.message, details)
        steps = [f"connected to {self._where}"]
        if self.config.get("tls"):
            steps.append("over TLS")
        elif self.config.get("starttls"):
            steps.append("upgraded with STARTTLS")
        if self.config.get("username"):
            steps.append(f"logged in as {self.config['username']}")
        return ConnectionTestResult(True, ", ".join(steps), details)

    # -- helpers ------------------------------------------------------------------
    def _build(self, message: EmailMessage) -> tuple[email.message.EmailMessage, str, list[str]]:
        """The MIME message, the envelope sender and every envelope recipient (bcc only
        here: it never becomes a header)."""
        sender = message.sender or self.config.get("from_address")
        if not sender:
            raise ConnectorConfigError(
                "no sender: set the connector's from_address or the message's 'from'",
                field_errors={"from_address": "required when messages do not name a sender"},
                operation="send_email",
            )
        mime = email.message.EmailMessage()
        try:
            mime["From"] = sender
            mime["To"] = ", ".join(message.to)
            if message.cc:
                mime["Cc"] = ", ".join(message.cc)
            if message.reply_to:
                mime["Reply-To"] = message.reply_to
            mime["Subject"] = message.subject
            mime["Date"] = format_datetime(datetime.now(UTC))
            for name, value in message.headers.items():
                if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
                    raise ConnectorConfigError(
                        f"header name {name!r} is not a valid field name: use printable "
                        "ASCII without spaces, ':' or line breaks, such as 'X-Campaign'",
                        operation="send_email",
                        remediation=PAYLOAD_REMEDIATION,
                    )
                if name.lower() in RESERVED_HEADERS:
                    raise ConnectorConfigError(
                        f"header {name!r} is set from the message fields; use them instead",
                        operation="send_email",
                    )
                mime[name] = value
            if "Message-ID" not in mime:
                mime["Message-ID"] = _message_id(message, sender)
            mime.set_content(message.text)
            if message.html is not None:
                mime.add_alternative(message.html, subtype="html")
        except ValueError as exc:  # e.g. a line break in a header value
            raise ConnectorConfigError(
                f"invalid email message: {exc}", operation="send_email"
            ) from exc
        recipients = [
            _address(value, field)
            for field, values in (("to", message.to), ("cc", message.cc), ("bcc", message.bcc))
            for value in values
        ]
        return mime, _address(sender, "from"), recipients

    @asynccontextmanager
    async def _session(self, operation: str) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected (and, as configured, upgraded and logged in) client; every
        ``aiosmtplib`` or socket error inside becomes a kernel error."""
        import aiosmtplib

        client = aiosmtplib.SMTP(
            hostname=str(self.config["host"]),
            port=int(self.config["port"]),
            username=self.config.get("username") or None,
            password=self.config.get("password") or None,
            use_tls=bool(self.config.get("tls")),
            start_tls=bool(self.config.get("starttls")),
            timeout=float(self.config["timeout_seconds"]),
        )
        try:
            await client.connect()
            try:
                yield client
            finally:
                await _quit(client)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._translate(exc, operation) from exc

    def _translate(self, exc: Exception, operation: str) -> ConnectorError:
        import aiosmtplib

        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            user = self.config.get("username")
            reason = self._redact(f"{exc.code} {exc.message}")
            return AuthError(
                f"the SMTP server {self._where} refused the login for {user!r} ({reason})",
                operation=operation,
            )
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            answers = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            cls = TransientError if all(_is_4xx(r.code) for r in exc.recipients) else PermanentError
            return cls(
                self._redact(f"the SMTP server refused every recipient ({answers})"),
                operation=operation,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            cls = TransientError if _is_4xx(exc.code) else PermanentError
            return cls(
                self._redact(f"the SMTP server {self._where} answered {exc.code} {exc.message}"),
                operation=operation,
            )
        if isinstance(exc, OSError):  # refused, reset, timeouts, TLS handshake, disconnects
            reason = getattr(exc, "message", None) or exc.strerror or str(exc)
            reason = reason or f"no answer within {self.config['timeout_seconds']} s"
            return ConnectionFailedError(
                self._redact(f"cannot reach the SMTP server {self._where}: {reason}"),
                operation=operation,
            )
        # What is left are mismatches between the config and the server's extensions
        # ("STARTTLS extension not supported", "no suitable authentication method").
        return ConnectorConfigError(
            self._redact(f"the SMTP server {self._where} cannot do what the config asks: {exc}"),
            operation=operation,
            remediation="Check the tls, starttls, port and username settings.",
        )

    def _redact(self, text: str) -> str:
        password = self.config.get("password")
        return text.replace(str(password), "********") if password else text


async def _quit(client: aiosmtplib.SMTP) -> None:
    """Say QUIT; if the server already hung up, just drop the socket. A failed goodbye
    must not turn a sent message into an error (a retry would send it twice)."""
    import aiosmtplib

    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _address(value: str, field: str) -> str:
    """The one address in ``value``. An entry naming several ("a@x, b@y") is refused:
    the header would show them all while the envelope, taken from it, reached only the
    first, so the others silently never got the message."""
    found = [address for _, address in getaddresses([value]) if address]
    if len(found) > 1:
        hint = f"pass each as its own list item: {json.dumps(found)}" if field != "from" else ""
        raise ConnectorConfigError(
            f"{field!r} entry {value!r} holds {len(found)} addresses; "
            + (hint or "a message has one sender"),
            operation="send_email",
            remediation=PAYLOAD_REMEDIATION,
        )
    address = parseaddr(value)[1]
    if "@" not in address:
        raise ConnectorConfigError(f"{value!r} is not an email address", operation="send_email")
    return address


def _message_id(message: EmailMessage, sender: str) -> str:
    """``<envelope id@sender's domain>`` for a delivered message: every attempt of a
    retried delivery sends the same Message-ID, which receivers deduplicate by. (An
    envelope id is a ULID, letters and digits: a valid RFC 5322 id-left, and unique.)
    A message sent without an envelope gets a random one."""
    if message.envelope_id and MSG_ID_LEFT.fullmatch(message.envelope_id):
        return f"<{message.envelope_id}@{_domain(sender)}>"
    return make_msgid(domain=_domain(sender))


def _domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


def _is_4xx(code: int) -> bool:
    return 400 <= code < 500
