"""smtp against a real SMTP server (aiosmtpd on 127.0.0.1): what arrives, and how every
kind of failure reaches the outbox."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage as MimeMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from jackfield.connectors.smtp import SmtpProvider
from jackfield.kernel import (
    AuthError,
    AuthFailed,
    ConnectionFailedError,
    ConnectorConfigError,
    Delivered,
    EmailMessage,
    Envelope,
    Permanent,
    PermanentError,
    Retry,
    RetryClass,
    TransientError,
)

pytestmark = pytest.mark.filterwarnings(
    # The test server takes AUTH without TLS on purpose: it only listens on 127.0.0.1.
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)

USER = "alice"
PASSWORD = "s3cret-Pa55word"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: MimeMessage


class RecordingHandler:
    """Accepts mail and keeps it. Recipients named ``refused@...`` get a 550 and
    ``later@...`` a 451, the way real servers answer unknown or greylisted mailboxes."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("refused@"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("later@"):
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, MimeMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def check_password(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_server(**smtp_options: Any) -> Iterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **smtp_options)
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@pytest.fixture
def server() -> Iterator[tuple[RecordingHandler, int]]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def auth_server() -> Iterator[tuple[RecordingHandler, int]]:
    with smtp_server(
        authenticator=check_password, auth_required=True, auth_require_tls=False
    ) as running:
        yield running


def provider(port: int, **config: Any) -> SmtpProvider:
    return SmtpProvider.from_config(
        {
            "host": "127.0.0.1",
            "port": str(port),
            "from_address": "Jackfield <jf@example.org>",
            "timeout_seconds": "5",
            **config,
        }
    )


def envelope(payload: dict[str, Any]) -> Envelope:
    return Envelope(
        envelope_id="01HZZSMTPTEST", connector_id="c-smtp", operation="send_email", payload=payload
    )


# -- what arrives ------------------------------------------------------------------
async def test_sent_message_arrives_with_headers_and_body(server: Any) -> None:
    handler, port = server
    result = await provider(port).send(
        EmailMessage(to=("bob@example.com",), subject="Quarterly report", text="Numbers attached.")
    )

    (got,) = handler.received
    assert got.mail_from == "jf@example.org"
    assert got.rcpt_tos == ["bob@example.com"]
    assert got.message["From"] == "Jackfield <jf@example.org>"
    assert got.message["To"] == "bob@example.com"
    assert got.message["Subject"] == "Quarterly report"
    assert got.message.get_content().strip() == "Numbers attached."
    assert got.message["Message-ID"] == result.message_id
    assert result.message_id.endswith("@example.org>")


async def test_html_is_sent_as_an_alternative_to_text(server: Any) -> None:
    handler, port = server
    await provider(port).send(
        EmailMessage(to=("bob@example.com",), subject="Hi", text="plain", html="<b>rich</b>")
    )
    message = handler.received[0].message
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and text.get_content().strip() == "plain"
    assert html is not None and html.get_content().strip() == "<b>rich</b>"


async def test_bcc_is_delivered_but_never_a_header(server: Any) -> None:
    handler, port = server
    await provider(port).send(
        EmailMessage(
            to=("to@example.com",),
            cc=("cc@example.com",),
            bcc=("hidden@example.com",),
            subject="s",
            text="t",
            reply_to="replies@example.org",
            headers={"X-Campaign": "spring"},
        )
    )
    got = handler.received[0]
    assert got.rcpt_tos == ["to@example.com", "cc@example.com", "hidden@example.com"]
    assert got.message["Cc"] == "cc@example.com"
    assert got.message["Reply-To"] == "replies@example.org"
    assert got.message["X-Campaign"] == "spring"
    assert got.message["Bcc"] is None
    assert b"hidden@example.com" not in got.message.as_bytes()


async def test_message_sender_overrides_from_address(server: Any) -> None:
    handler, port = server
    await provider(port).send(
        EmailMessage(to=("bob@example.com",), subject="s", sender="Ops <ops@example.net>")
    )
    assert handler.received[0].mail_from == "ops@example.net"
    assert handler.received[0].message["From"] == "Ops <ops@example.net>"


async def test_deliver_send_email_through_the_outbox_contract(server: Any) -> None:
    handler, port = server
    outcome = await provider(port).deliver(
        envelope({"to": "bob@example.com", "subject": "via outbox", "text": "hello"})
    )
    assert isinstance(outcome, Delivered)
    assert outcome.result["message_id"] == handler.received[0].message["Message-ID"]


async def test_every_attempt_of_a_delivery_sends_the_same_message_id(server: Any) -> None:
    """Before, each attempt made a new random Message-ID, so a receiver could not tell a
    retried delivery (at-least-once) from a second message. Now it is the envelope id at
    the sender's domain, a valid RFC 5322 msg-id."""
    handler, port = server
    retried = envelope({"to": "bob@example.com", "subject": "invoice", "text": "t"})
    for _ in range(2):
        outcome = await provider(port).deliver(retried)
        assert isinstance(outcome, Delivered), outcome
    ids = [got.message["Message-ID"] for got in handler.received]
    assert ids == [f"<{retried.envelope_id}@example.org>"] * 2
    parsed = handler.received[0].message["Message-ID"]
    assert parsed.defects == ()  # the email package parsed it as a valid msg-id


async def test_a_message_id_the_payload_sets_is_kept(server: Any) -> None:
    handler, port = server
    payload = {"to": "bob@example.com", "subject": "s", "headers": {"Message-ID": "<a@b.c>"}}
    outcome = await provider(port).deliver(envelope(payload))
    assert isinstance(outcome, Delivered), outcome
    assert handler.received[0].message["Message-ID"] == "<a@b.c>"


async def test_partly_refused_recipients_still_deliver_to_the_rest(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler, port = server
    with caplog.at_level(logging.WARNING, logger="jackfield.connectors.smtp"):
        await provider(port).send(
            EmailMessage(to=("bob@example.com", "refused@example.com"), subject="s", text="t")
        )
    assert handler.received[0].rcpt_tos == ["bob@example.com"]
    assert "refused@example.com (550)" in caplog.text


async def test_refused_recipients_are_named_in_the_delivered_result(server: Any) -> None:
    """Before, the outbox showed only {message_id}: who got a 550 or a 451 was in a log
    line only. Now the result names each with the server's answer; a 4xx is marked
    temporary (and not retried: the accepted recipient would get the mail twice)."""
    handler, port = server
    payload = {
        "to": ["bob@example.com", "refused@example.com"],
        "cc": "later@example.com",
        "subject": "s",
        "text": "t",
    }
    outcome = await provider(port).deliver(envelope(payload))

    assert isinstance(outcome, Delivered)
    assert [r.rcpt_tos for r in handler.received] == [["bob@example.com"]]
    assert outcome.result["message_id"] == handler.received[0].message["Message-ID"]
    assert outcome.result["refused"] == [
        {
            "recipient": "refused@example.com",
            "code": 550,
            "message": "5.1.1 mailbox unavailable",
            "temporary": False,
        },
        {
            "recipient": "later@example.com",
            "code": 451,
            "message": "4.7.1 greylisted, try again later",
            "temporary": True,
        },
    ]


# -- invalid messages and config ---------------------------------------------------
async def test_no_sender_anywhere_is_a_config_error(server: Any) -> None:
    _, port = server
    smtp = SmtpProvider.from_config({"host": "127.0.0.1", "port": port})
    with pytest.raises(ConnectorConfigError, match="from_address"):
        await smtp.send(EmailMessage(to=("bob@example.com",), subject="s"))


@pytest.mark.parametrize(
    "headers", [{"X-Evil": "a\r\nBcc: victim@example.com"}, {"Bcc": "sneaky@example.com"}]
)
async def test_header_injection_is_refused(server: Any, headers: dict[str, str]) -> None:
    handler, port = server
    with pytest.raises(ConnectorConfigError):
        await provider(port).send(
            EmailMessage(to=("bob@example.com",), subject="s", headers=headers)
        )
    assert handler.received == []


@pytest.mark.parametrize(
    "name",
    [
        "X-A: v\r\nFrom: ceo@bank.example\r\nReply-To",  # the reported injection
        "X-A\nBcc",
        "X-A: v",
        "X Campaign",
    ],
)
async def test_a_header_name_that_is_not_a_field_name_is_refused(server: Any, name: str) -> None:
    """Before, a name holding CRLF was written as given: the mail arrived with a second
    From: and an attacker's Reply-To:. Now nothing is sent and the error says why."""
    handler, port = server
    smtp = provider(port)
    payload = {"to": "bob@example.com", "subject": "s", "headers": {name: "evil@example.com"}}
    outcome = await smtp.deliver(envelope(payload))
    assert isinstance(outcome, Permanent)
    assert "header name" in outcome.message and "not a valid field name" in outcome.message
    assert handler.received == []


@pytest.mark.parametrize(
    ("field", "entry"),
    [
        ("to", "bob@example.com, carol@example.com"),
        ("to", "bob@example.com; carol@example.com"),
        ("cc", "bob@example.com, carol@example.com"),
        ("bcc", "<bob@example.com> <carol@example.com>"),
    ],
)
async def test_an_entry_holding_several_addresses_is_refused(
    server: Any, field: str, entry: str
) -> None:
    """Before, the header showed both addresses but the envelope held only the first:
    carol never got the mail and the outbox said delivered. Now the entry is refused
    with a hint to pass a list, and a list (display names with commas included) works."""
    handler, port = server
    smtp = provider(port)
    base = {"to": "dan@example.com", "subject": "s", "text": "t"}
    outcome = await smtp.deliver(envelope({**base, field: [entry]}))
    assert isinstance(outcome, Permanent)
    assert f"'{field}' entry" in outcome.message and "holds 2 addresses" in outcome.message
    assert "list" in outcome.message
    assert handler.received == []

    listed = ['"Doe, Bob" <bob@example.com>', "carol@example.com"]
    outcome = await smtp.deliver(envelope({**base, field: listed}))
    assert isinstance(outcome, Delivered)
    assert {"bob@example.com", "carol@example.com"} <= set(handler.received[0].rcpt_tos)


async def test_a_sender_holding_several_addresses_is_refused(server: Any) -> None:
    handler, port = server
    payload = {"to": "bob@example.com", "subject": "s", "from": "a@example.com, b@example.com"}
    outcome = await provider(port).deliver(envelope(payload))
    assert isinstance(outcome, Permanent)
    assert "'from' entry" in outcome.message and "one sender" in outcome.message
    assert handler.received == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"headers": {"X-N": 5}}, "headers"),
        ({"headers": ["X-N"]}, "headers"),
        ({"to": 5}, "to"),
        ({"to": {"bob@example.com": 1}}, "to"),
        ({"cc": ["cc@example.com", 7]}, "cc"),
        ({"html": 5}, "html"),
        ({"from": ["ops@example.net"]}, "from"),
        ({"reply_to": {"a": "b"}}, "reply_to"),
        # before: sent, as Python wrote them ("{'lines': ['hi']}", "True")
        ({"text": {"lines": ["hi"]}}, "text"),
        ({"subject": ["Invoice", "42"]}, "subject"),
        ({"subject": True}, "subject"),
    ],
)
async def test_a_field_of_the_wrong_type_is_permanent_and_nothing_is_sent(
    server: Any, fields: dict[str, Any], field: str
) -> None:
    """Before, these escaped as TypeError ("unexpected error: 'int' object is not
    subscriptable"): a crash of the unit, retried after backoff while later mail waited."""
    handler, port = server
    payload = {"to": "bob@example.com", "subject": "s", "text": "t", **fields}
    outcome = await provider(port).deliver(envelope(payload))
    assert isinstance(outcome, Permanent), outcome
    assert outcome.error_class == "PermanentError"
    assert f"payload field {field!r}" in outcome.message
    assert handler.received == []


def test_tls_and_starttls_together_are_refused() -> None:
    with pytest.raises(ConnectorConfigError) as info:
        SmtpProvider.from_config({"host": "mail.example.org", "tls": "true", "starttls": "true"})
    assert set(info.value.field_errors) == {"tls", "starttls"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"port": "99999"}, {"port"}),
        ({"port": "0"}, {"port"}),
        ({"port": "-25"}, {"port"}),
        ({"timeout_seconds": "0"}, {"timeout_seconds"}),
        ({"timeout_seconds": "-5"}, {"timeout_seconds"}),
        ({"tls": "true", "starttls": "true"}, {"tls", "starttls"}),
        ({"port": "70000", "timeout_seconds": "0"}, {"port", "timeout_seconds"}),
    ],
)
def test_a_config_that_can_never_connect_is_refused_when_saved(
    jf: Any, admin: Any, params: dict[str, str], fields: set[str]
) -> None:
    """Before, these were accepted on create and failed only at Test (port 99999 as
    "unexpected error (OverflowError)") or, for timeout 0, on every delivery."""
    entries = [{"key": k, "value": v} for k, v in {"host": "127.0.0.1", **params}.items()]
    with pytest.raises(ConnectorConfigError) as info:
        jf.connectors.create(
            admin, name="mail", category="email", provider_type="smtp", params=entries
        )
    assert set(info.value.field_errors) == fields
    assert jf.connectors.list(admin) == []


def test_schema_marks_the_password_secret_and_requires_host() -> None:
    fields = {f.key: f for f in SmtpProvider.config_schema()}
    assert fields["password"].secret
    assert fields["host"].required
    assert (fields["port"].default, fields["timeout_seconds"].default) == (587, 10)
    with pytest.raises(ConnectorConfigError):
        SmtpProvider.from_config({})


# -- authentication ------------------------------------------------------------------
async def test_login_with_the_right_password_sends(auth_server: Any) -> None:
    handler, port = auth_server
    await provider(port, username=USER, password=PASSWORD).send(
        EmailMessage(to=("bob@example.com",), subject="authenticated", text="t")
    )
    assert handler.received[0].message["Subject"] == "authenticated"


async def test_wrong_password_is_an_auth_error_without_the_password(auth_server: Any) -> None:
    handler, port = auth_server
    wrong = "not-the-Pa55word"
    smtp = provider(port, username=USER, password=wrong)
    with pytest.raises(AuthError) as info:
        await smtp.send(EmailMessage(to=("bob@example.com",), subject="s", text="t"))
    assert info.value.operation == "send_email"
    assert USER in str(info.value)
    assert wrong not in str(info.value)
    assert wrong not in repr(info.value.to_dict())
    assert handler.received == []

    outcome = await smtp.deliver(envelope({"to": "bob@example.com", "subject": "s"}))
    assert isinstance(outcome, AuthFailed)
    assert wrong not in outcome.message


async def test_server_requiring_auth_refuses_anonymous_sends_permanently(auth_server: Any) -> None:
    _, port = auth_server
    with pytest.raises(PermanentError, match="530"):
        await provider(port).send(EmailMessage(to=("bob@example.com",), subject="s"))


# -- failures the outbox must classify -------------------------------------------------
async def test_closed_port_is_a_retryable_connection_failure() -> None:
    smtp = provider(free_port())
    with pytest.raises(ConnectionFailedError) as info:
        await smtp.send(EmailMessage(to=("bob@example.com",), subject="s"))
    assert info.value.retryable
    assert "127.0.0.1" in str(info.value)

    outcome = await smtp.deliver(envelope({"to": "bob@example.com", "subject": "s"}))
    assert isinstance(outcome, Retry)
    assert outcome.retry_class is RetryClass.TRANSIENT


async def test_silent_server_times_out_as_a_connection_failure() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        smtp = provider(silent.getsockname()[1], timeout_seconds="1")
        with pytest.raises(ConnectionFailedError):
            await smtp.send(EmailMessage(to=("bob@example.com",), subject="s"))


async def test_550_recipient_is_permanent(server: Any) -> None:
    handler, port = server
    smtp = provider(port)
    with pytest.raises(PermanentError, match="550") as info:
        await smtp.send(EmailMessage(to=("refused@example.com",), subject="s"))
    assert "refused@example.com" in str(info.value)
    outcome = await smtp.deliver(envelope({"to": "refused@example.com", "subject": "s"}))
    assert isinstance(outcome, Permanent)
    assert handler.received == []


async def test_451_recipient_is_transient(server: Any) -> None:
    _, port = server
    smtp = provider(port)
    with pytest.raises(TransientError, match="451"):
        await smtp.send(EmailMessage(to=("later@example.com",), subject="s"))
    outcome = await smtp.deliver(envelope({"to": "later@example.com", "subject": "s"}))
    assert isinstance(outcome, Retry)


# -- connection test -----------------------------------------------------------------
async def test_connection_test_succeeds_and_logs_in(auth_server: Any) -> None:
    _, port = auth_server
    result = await provider(port, username=USER, password=PASSWORD).test_connection()
    assert result.success, result.message
    assert result.message == f"connected to 127.0.0.1:{port}, logged in as {USER}"


async def test_connection_test_reports_a_refused_login(auth_server: Any) -> None:
    _, port = auth_server
    result = await provider(port, username=USER, password="wrong-one").test_connection()
    assert not result.success
    assert "refused the login" in result.message
    assert "wrong-one" not in result.message
    assert result.details is not None and result.details["code"] == "auth_failed"


async def test_connection_test_reports_an_unreachable_server() -> None:
    result = await provider(free_port()).test_connection()
    assert not result.success
    assert "cannot reach the SMTP server 127.0.0.1" in result.message


async def test_connection_test_reports_missing_starttls(server: Any) -> None:
    _, port = server
    result = await provider(port, starttls="true").test_connection()
    assert not result.success
    assert "STARTTLS" in result.message
    assert result.details is not None and "starttls" in result.details["remediation"]


@pytest.mark.parametrize("field", ["subject", "text"])
async def test_a_null_subject_or_text_is_left_empty_not_sent_as_none(
    server: Any, field: str
) -> None:
    """Before, ``"subject": null`` reached the recipient as the subject "None" (and a
    null text as a body reading "None")."""
    handler, port = server
    payload = {"to": "bob@example.com", "subject": "s", "text": "t", field: None}
    outcome = await provider(port).deliver(envelope(payload))
    assert isinstance(outcome, Delivered), outcome
    message = handler.received[0].message
    assert "None" not in message.as_string()
    shown = message["Subject"] if field == "subject" else message.get_content().strip()
    assert shown == ""


async def test_a_number_as_subject_or_text_is_sent_as_written(server: Any) -> None:
    handler, port = server
    payload = {"to": "bob@example.com", "subject": 1042, "text": 2.5}
    outcome = await provider(port).deliver(envelope(payload))
    assert isinstance(outcome, Delivered), outcome
    message = handler.received[0].message
    assert (message["Subject"], message.get_content().strip()) == ("1042", "2.5")
