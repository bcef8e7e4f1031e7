"""Mail against a real SMTP server (aiosmtpd) that each test starts on a free loopback port.

What a user or an operator would notice: the mail arrives with the right headers, body and
link; credentials from `SMTP_URL` work; a refused recipient is given up, a refusing, absent
or silent server is retried; user text cannot add headers; the SMTP password never shows up
in an error. Timeouts are small and every wait has a generous guard, so no test depends on
how fast the machine is.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import random
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from app.core.config import ConfigurationError, Settings
from app.jobs.mail import (
    MAIL_MAX_ATTEMPTS,
    MAIL_RETRY_CAP,
    MAIL_RETRY_JITTER,
    MailOutcome,
    MailResult,
    OutgoingMail,
    SmtpServer,
    mail_retry_at,
    mail_retry_delay,
    notification_mail,
    parse_smtp_url,
    send_mail,
    smtp_server,
    web_link,
)
from tests.e2e.test_server import free_port

SENDER = "tasks@example.com"
RECIPIENT = "alice@example.com"
USER = "mailer@example.com"
# Characters that must be percent-encoded in a URL, so decoding is tested too.
PASSWORD = "s3cr3t p@ss:w/rd%"
# Far above any timeout used here: a guard against a hang, not a speed requirement.
GUARD_SECONDS = 30.0


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what it accepts, refuses recipients it is told to."""

    envelopes: list[Envelope] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    rcpt_reply: str | None = None

    async def handle_RCPT(
        self,
        server: SMTP,  # noqa: ARG002 (aiosmtpd's hook signature)
        session: Session,  # noqa: ARG002
        envelope: Envelope,
        address: str,
        options: Any,  # noqa: ARG002
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self,
        server: SMTP,  # noqa: ARG002 (aiosmtpd's hook signature)
        session: Session,
        envelope: Envelope,
    ) -> str:
        self.envelopes.append(envelope)
        self.sessions.append(session)
        return "250 Message accepted for delivery"

    def only_message(self) -> EmailMessage:
        assert len(self.envelopes) == 1
        content = self.envelopes[0].content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


StartServer = Callable[..., tuple[Mailbox, int]]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start aiosmtpd on 127.0.0.1 (in its own thread and loop); stopped after the test."""
    controllers: list[Controller] = []

    def start(mailbox: Mailbox | None = None, **smtp_options: Any) -> tuple[Mailbox, int]:
        mailbox = mailbox or Mailbox()
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **smtp_options)
        controller.start()
        controllers.append(controller)
        return mailbox, port

    yield start
    for controller in controllers:
        controller.stop()


def accept(login: bytes, password: bytes) -> Callable[..., AuthResult]:
    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (login, password)
        # handled=False: aiosmtpd then answers a failure with 535 itself.
        return AuthResult(success=ok, handled=False)

    return authenticator


def plain(port: int, *, user: str | None = None, password: str | None = None) -> SmtpServer:
    credentials = ""
    if user is not None:
        credentials = quote(user, safe="")
        if password is not None:
            credentials += ":" + quote(password, safe="")
        credentials += "@"
    return parse_smtp_url(f"smtp://{credentials}127.0.0.1:{port}")


def a_mail(**overrides: Any) -> OutgoingMail:
    values: dict[str, Any] = {
        "to": RECIPIENT,
        "kind": "assigned",
        "message": "Bob assigned you to Ship the release",
        "project": (7, "Launch"),
        "task": (42, "Ship the release"),
        "public_url": "https://tasks.example.com",
    }
    values.update(overrides)
    return notification_mail(**values)


async def send(server: SmtpServer, mail: OutgoingMail, *, timeout: float = 5.0) -> MailResult:
    return await asyncio.wait_for(
        send_mail(server, SENDER, mail, timeout=timeout), timeout=GUARD_SECONDS
    )


def one_message(
    received: list[bytes], then: str
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A minimal SMTP server that takes a message into `received`, and `then`: "250" answers
    it (and never answers QUIT), "no answer" never answers it, "hang up" closes at once,
    "451, silent" refuses it for now and never answers the RSET that follows."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 minimal ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250 minimal\r\n")
            elif verb in {b"MAIL", b"RCPT"}:
                writer.write(b"250 OK\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                received.append(await reader.readuntil(b"\r\n.\r\n"))
                if then == "hang up":
                    break
                if then == "no answer":
                    await reader.read()  # until the client hangs up
                    break
                refused = then == "451, silent"
                writer.write(b"451 try again later\r\n" if refused else b"250 queued\r\n")
            elif verb in {b"QUIT", b"RSET"}:
                await reader.read()  # never answers; waits for the client to hang up
                break
            await writer.drain()
        writer.close()

    return serve


def assert_no_password(*texts: str | None) -> None:
    forms = {
        PASSWORD,
        quote(PASSWORD, safe=""),
        base64.b64encode(PASSWORD.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    }
    for text in texts:
        for form in forms:
            assert form not in (text or "")


class TestSmtpUrl:
    def test_unset_means_no_mail(self) -> None:
        assert smtp_server(Settings(smtp_url=None)) is None
        assert smtp_server(Settings(smtp_url="")) is None

    def test_plain_with_credentials_percent_decoded(self) -> None:
        raw = f"smtp://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}@Mail.Example.com:2525"
        server = smtp_server(Settings(smtp_url=SecretStr(raw)))
        assert server == SmtpServer(
            host="mail.example.com",
            port=2525,
            implicit_tls=False,
            username=USER,
            password=PASSWORD,
        )
        assert_no_password(repr(server), str(server), server.display)

    @pytest.mark.parametrize(
        ("url", "port", "implicit_tls"),
        [
            ("smtp://mail.example.com", 25, False),
            ("smtps://mail.example.com", 465, True),
            ("SMTPS://mail.example.com:2465/", 2465, True),
            ("smtp://[::1]:1025", 1025, False),
        ],
    )
    def test_default_ports_and_tls(self, url: str, port: int, implicit_tls: bool) -> None:
        server = parse_smtp_url(url)
        assert (server.port, server.implicit_tls, server.username, server.password) == (
            port,
            implicit_tls,
            None,
            None,
        )

    @pytest.mark.parametrize(
        "url",
        [
            f"http://user:{PASSWORD}@mail.example.com",
            f"smtp://user:{PASSWORD}@mail.example.com:notaport",
            f"smtp://user:{PASSWORD}@mail.example.com:99999",
            f"smtp://user:{PASSWORD}@mail.example.com:0",
            f"smtp://user:{PASSWORD}@",
            f"smtp://user:{PASSWORD}@mail.example.com/inbox",
            f"smtp://user:{PASSWORD}@mail.example.com?tls=1",
            f"smtp://:{PASSWORD}@mail.example.com",
            f"mail.example.com:{PASSWORD}",
            PASSWORD,
        ],
    )
    def test_refused_without_repeating_the_password(self, url: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            smtp_server(Settings(smtp_url=SecretStr(url)))
        assert "SMTP_URL" in str(caught.value)
        assert PASSWORD not in str(caught.value)
        # Nothing chained either: a traceback in a log would print it.
        assert caught.value.__cause__ is None
        assert caught.value.__context__ is None or caught.value.__suppress_context__


class TestNotificationMail:
    def test_names_the_task_and_links_to_it(self) -> None:
        mail = a_mail(public_url="https://tasks.example.com/")
        assert mail.to == RECIPIENT
        assert mail.subject == "[Tasks] Assigned to you: Ship the release"
        assert "Bob assigned you to Ship the release" in mail.text
        assert "Task: Ship the release" in mail.text
        assert "Project: Launch" in mail.text
        assert "https://tasks.example.com/?task=42" in mail.text

    def test_names_the_project_and_links_to_it(self) -> None:
        mail = a_mail(kind="invited", message="Bob invited you", task=None)
        assert mail.subject == "[Tasks] Invitation: Launch"
        assert "Project: Launch" in mail.text
        assert "https://tasks.example.com/?project=7" in mail.text
        assert (
            web_link("https://t.example/app/", project_id=7) == "https://t.example/app/?project=7"
        )

    def test_no_link_without_public_url(self) -> None:
        mail = a_mail(public_url=None)
        assert "http" not in mail.text
        assert "Task: Ship the release" in mail.text

    def test_long_title_makes_a_short_subject(self) -> None:
        mail = a_mail(task=(42, "word " * 200))
        assert len(mail.subject) <= 120
        assert mail.subject.endswith("…")


class TestSendMail:
    async def test_delivers_the_notification(self, start_server: StartServer) -> None:
        mailbox, port = start_server()
        result = await send(plain(port), a_mail())
        assert result == MailResult(MailOutcome.SENT)
        assert result.sent
        envelope = mailbox.envelopes[0]
        assert (envelope.mail_from, envelope.rcpt_tos) == (SENDER, [RECIPIENT])
        message = mailbox.only_message()
        assert message["From"] == SENDER
        assert message["To"] == RECIPIENT
        assert message["Subject"] == "[Tasks] Assigned to you: Ship the release"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message.get_content_type() == "text/plain"
        body = message.get_content()
        assert "Bob assigned you to Ship the release" in body
        assert "https://tasks.example.com/?task=42" in body

    @pytest.mark.parametrize(
        "title",
        [
            "Überprüfung — 发布 ✓",
            # Long enough to be folded over several encoded words, spaces everywhere.
            "Überprüfung der Veröffentlichung — 发布 前 的 检查 ✓ and a few more words 😀 end",
            "ASCII only but long enough to be folded over more than one header line, surely",
        ],
    )
    async def test_any_title_arrives_intact(self, start_server: StartServer, title: str) -> None:
        mailbox, port = start_server()
        result = await send(plain(port), a_mail(task=(42, title), message=f"Reminder: {title}"))
        assert result.sent
        message = mailbox.only_message()
        assert message["Subject"] == f"[Tasks] Assigned to you: {title}"
        assert f"Task: {title}" in message.get_content()

    @pytest.mark.parametrize(
        "title",
        [
            "=?utf-8?q?Hi=0D=0AReply-To:_attacker@evil.example=0D=0AX-Injected:_yes?=",
            "=?utf-8?q?Hi=0D=0AContent-Type:_text/html=0D=0A=0D=0A<a_href=3Dhttp://evil>x</a>?=",
        ],
    )
    async def test_an_encoded_word_in_a_title_stays_text(
        self, start_server: StartServer, title: str
    ) -> None:
        # Before, the email package decoded it and wrote its line breaks out: a Reply-To of
        # the attacker's, or an HTML body, in a mail from the service (a black-box run).
        mailbox, port = start_server()
        result = await send(plain(port), a_mail(task=(42, title)))
        assert result.sent, result.error
        message = mailbox.only_message()
        assert message["Subject"] == f"[Tasks] Assigned to you: {title}"
        for injected in ("Reply-To", "X-Injected"):
            assert injected not in message
        assert message.get_content_type() == "text/plain"
        assert f"Task: {title}" in message.get_content()

    async def test_internationalized_recipient(self, start_server: StartServer) -> None:
        mailbox, port = start_server()  # aiosmtpd's controller offers SMTPUTF8
        to = "jürgen@bücher.example"
        result = await send(plain(port), a_mail(to=to, task=(42, "Prüfung ✓")))
        assert result.sent
        assert mailbox.envelopes[0].rcpt_tos == [to]
        message = mailbox.only_message()
        assert message["To"] == to
        assert message["Subject"] == "[Tasks] Assigned to you: Prüfung ✓"

    async def test_a_unicode_domain_reaches_a_server_without_smtputf8(
        self, start_server: StartServer
    ) -> None:
        # Before, such a server refused the mail for good ("SMTPUTF8 is not supported"),
        # though the domain has an ASCII form (a black-box run, 2026-12-07).
        mailbox, port = start_server(enable_SMTPUTF8=False)
        result = await send(plain(port), a_mail(to="kim@bücher.example"))
        assert result.sent, result.error
        assert mailbox.envelopes[0].rcpt_tos == ["kim@xn--bcher-kva.example"]
        assert mailbox.only_message()["To"] == "kim@xn--bcher-kva.example"

    async def test_a_unicode_local_part_needs_smtputf8(self, start_server: StartServer) -> None:
        mailbox, port = start_server(enable_SMTPUTF8=False)
        result = await send(plain(port), a_mail(to="jürgen@bücher.example"))
        assert result.permanent
        assert mailbox.envelopes == []

    async def test_sender_with_a_display_name(self, start_server: StartServer) -> None:
        mailbox, port = start_server()
        sender = "Tasks <tasks@example.com>"
        result = await asyncio.wait_for(
            send_mail(plain(port), sender, a_mail(), timeout=5.0), timeout=GUARD_SECONDS
        )
        assert result.sent
        assert mailbox.envelopes[0].mail_from == "tasks@example.com"
        message = mailbox.only_message()
        assert message["From"] == sender
        assert message["Message-ID"].endswith("@example.com>")

    @pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
    async def test_authenticates_with_the_url_credentials(self, start_server: StartServer) -> None:
        mailbox, port = start_server(
            authenticator=accept(USER.encode(), PASSWORD.encode()),
            auth_required=True,
            auth_require_tls=False,
        )
        result = await send(plain(port, user=USER, password=PASSWORD), a_mail())
        assert result.sent
        assert mailbox.sessions[0].authenticated
        assert mailbox.only_message()["To"] == RECIPIENT

    @pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
    async def test_wrong_password_is_retried_and_not_told(self, start_server: StartServer) -> None:
        # Credentials are the configuration's, not this mail's: retried while they get fixed.
        mailbox, port = start_server(
            authenticator=accept(USER.encode(), b"the right one"),
            auth_required=True,
            auth_require_tls=False,
        )
        result = await send(plain(port, user=USER, password=PASSWORD), a_mail())
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert result.retry
        assert result.error is not None
        assert "535" in result.error
        assert_no_password(result.error)
        assert mailbox.envelopes == []

    @pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
    async def test_server_echoing_the_credentials_is_redacted(
        self, start_server: StartServer
    ) -> None:
        def echo(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            assert isinstance(data, LoginPassword)
            secret = data.password.decode()
            encoded = base64.b64encode(data.password).decode()
            return AuthResult(
                success=False, handled=False, message=f"535 5.7.8 no: {secret} {encoded}"
            )

        _, port = start_server(authenticator=echo, auth_required=True, auth_require_tls=False)
        result = await send(plain(port, user=USER, password=PASSWORD), a_mail())
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert result.error is not None
        assert "[redacted]" in result.error
        assert_no_password(result.error)

    async def test_credentials_and_no_auth_offered_is_retried(
        self, start_server: StartServer
    ) -> None:
        # aiosmtpd offers AUTH only over TLS by default: the mail is not sent unauthenticated.
        mailbox, port = start_server()
        result = await send(plain(port, user=USER, password=PASSWORD), a_mail())
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert_no_password(result.error)
        assert mailbox.envelopes == []

    async def test_recipient_refused_for_good(self, start_server: StartServer) -> None:
        mailbox, port = start_server(Mailbox(rcpt_reply="550 5.1.1 No such user here"))
        result = await send(plain(port), a_mail())
        assert result.outcome is MailOutcome.PERMANENT_FAILURE
        assert result.permanent
        assert not result.retry
        assert result.error == "550 5.1.1 No such user here"
        assert mailbox.envelopes == []

    async def test_recipient_refused_for_now(self, start_server: StartServer) -> None:
        mailbox, port = start_server(Mailbox(rcpt_reply="451 4.3.0 Try again later"))
        result = await send(plain(port), a_mail())
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert result.error == "451 4.3.0 Try again later"
        assert mailbox.envelopes == []

    async def test_nothing_listening_is_retried(self) -> None:
        server = plain(free_port(), user=USER, password=PASSWORD)
        result = await send(server, a_mail(), timeout=2.0)
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert result.error is not None
        assert_no_password(result.error)

    async def test_silent_server_times_out_and_is_retried(self) -> None:
        # The kernel completes the TCP handshake; nobody ever reads or answers.
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            server = plain(port, user=USER, password=PASSWORD)
            result = await send(server, a_mail(), timeout=0.2)
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert result.error is not None
        assert_no_password(result.error)

    async def test_server_stalling_mid_session_is_retried(self) -> None:
        # Greets and then never answers: only the session deadline ends the attempt.
        async def greet_then_stall(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            writer.write(b"220 stalling ESMTP\r\n")
            await writer.drain()
            await reader.read()  # until the client hangs up
            writer.close()

        listener = await asyncio.start_server(greet_then_stall, "127.0.0.1", 0)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            result = await send(plain(port), a_mail(), timeout=0.3)
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE

    async def test_mail_accepted_then_no_answer_to_quit_is_sent(self) -> None:
        # Once the server said 250 to the message it is sent: a hang after that must not
        # make it a failure (which would be retried, and mailed twice).
        received: list[bytes] = []
        listener = await asyncio.start_server(one_message(received, "250"), "127.0.0.1", 0)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            result = await send(plain(port), a_mail(), timeout=0.3)
        assert result.sent
        assert len(received) == 1

    @pytest.mark.parametrize("then", ["no answer", "hang up"])
    async def test_message_sent_then_no_answer_is_not_retried(self, then: str) -> None:
        # The server has the message; whether it accepted it is unknown. Sent again, it could
        # arrive twice (a black-box run: a server answering after 13 s got every mail twice).
        received: list[bytes] = []
        listener = await asyncio.start_server(one_message(received, then), "127.0.0.1", 0)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            result = await send(plain(port), a_mail(), timeout=0.5)
        assert len(received) == 1
        assert result.outcome is MailOutcome.UNKNOWN
        assert not result.retry

    async def test_a_refusal_for_now_is_retried_even_if_nothing_follows(self) -> None:
        # The server answered the message: 451, not taken. aiosmtplib then says RSET, and a
        # timeout there must not hide the answer (given up as unknown, the mail was lost).
        received: list[bytes] = []
        listener = await asyncio.start_server(one_message(received, "451, silent"), "127.0.0.1", 0)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            result = await send(plain(port), a_mail(), timeout=0.5)
        assert len(received) == 1
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert result.error is not None
        assert result.error.startswith("451")

    async def test_a_connection_lost_before_the_message_is_retried(self) -> None:
        # Lost before the message was sent: nothing can have been delivered.
        async def hang_up_at_rcpt(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            writer.write(b"220 minimal ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250 minimal\r\n")
                elif verb == b"MAIL":
                    writer.write(b"250 OK\r\n")
                else:
                    break
                await writer.drain()
            writer.close()

        listener = await asyncio.start_server(hang_up_at_rcpt, "127.0.0.1", 0)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            result = await send(plain(port), a_mail(), timeout=0.5)
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE

    async def test_the_message_waits_for_before_message(self, start_server: StartServer) -> None:
        """The mail job notes, just before the message, that the mail may reach the server
        from then on: the envelope is accepted by then, and the message not yet sent."""
        mailbox, port = start_server()
        seen: list[int] = []

        async def before_message() -> bool:
            seen.append(len(mailbox.envelopes))
            return True

        result = await asyncio.wait_for(
            send_mail(plain(port), SENDER, a_mail(), timeout=5.0, before_message=before_message),
            timeout=GUARD_SECONDS,
        )
        assert result.sent
        assert seen == [0]
        assert len(mailbox.envelopes) == 1

    async def test_a_message_withheld_by_before_message_is_not_sent(
        self, start_server: StartServer
    ) -> None:
        mailbox, port = start_server()

        async def withhold() -> bool:
            return False

        result = await asyncio.wait_for(
            send_mail(plain(port), SENDER, a_mail(), timeout=5.0, before_message=withhold),
            timeout=GUARD_SECONDS,
        )
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert mailbox.envelopes == []

    async def test_user_text_adds_no_header(self, start_server: StartServer) -> None:
        mailbox, port = start_server()
        title = "Launch\r\nBcc: x@y\nX-Injected: 1\u2028Cc: z@y"
        mail = a_mail(
            task=(42, title),
            project=(7, "Team\r\nBcc: p@y"),
            # SMTP smuggling: an end of data inside the text must not end the message.
            message="Bob wrote:\r\n.\r\nMAIL FROM:<evil@y>\r\nRCPT TO:<victim@y>\r\n",
        )
        result = await send(plain(port), mail)
        assert result.sent
        assert mailbox.envelopes[0].rcpt_tos == [RECIPIENT]
        message = mailbox.only_message()
        for header in ("Bcc", "Cc", "X-Injected"):
            assert header not in message
        assert (
            message["Subject"] == "[Tasks] Assigned to you: Launch Bcc: x@y X-Injected: 1 Cc: z@y"
        )
        body = message.get_content()
        assert "MAIL FROM:<evil@y>" in body
        assert "Project: Team Bcc: p@y" in body

    async def test_header_breaking_recipient_is_given_up(self, start_server: StartServer) -> None:
        mailbox, port = start_server()
        result = await send(plain(port), a_mail(to="alice@example.com\r\nBcc: x@y"))
        assert result.outcome is MailOutcome.PERMANENT_FAILURE
        assert mailbox.envelopes == []


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    made = Certificate(folder / "cert.pem", folder / "key.pem")
    subprocess.run(
        [
            openssl, "req", "-x509", "-nodes", "-days", "2",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(made.key), "-out", str(made.cert),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=GUARD_SECONDS,
    )  # fmt: skip
    return made


class TestTls:
    async def test_smtps_is_implicit_tls(
        self, start_server: StartServer, certificate: Certificate, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The client trusts the system's CAs; here the test's own CA is the system's.
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
        mailbox, port = start_server(ssl_context=certificate.server_context())
        result = await send(parse_smtp_url(f"smtps://127.0.0.1:{port}"), a_mail())
        assert result.sent
        assert mailbox.only_message()["To"] == RECIPIENT

    async def test_smtps_refuses_an_untrusted_certificate(
        self, start_server: StartServer, certificate: Certificate, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        mailbox, port = start_server(ssl_context=certificate.server_context())
        credentials = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
        server = parse_smtp_url(f"smtps://{credentials}@127.0.0.1:{port}")
        result = await send(server, a_mail())
        assert result.outcome is MailOutcome.TEMPORARY_FAILURE
        assert_no_password(result.error)
        assert mailbox.envelopes == []

    async def test_smtp_uses_starttls_when_offered(
        self, start_server: StartServer, certificate: Certificate, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
        mailbox, port = start_server(
            tls_context=certificate.server_context(),
            authenticator=accept(USER.encode(), PASSWORD.encode()),
            auth_required=True,
        )
        # AUTH is offered only after STARTTLS here: success proves both happened.
        result = await send(plain(port, user=USER, password=PASSWORD), a_mail())
        assert result.sent
        assert mailbox.sessions[0].ssl is not None
        assert mailbox.sessions[0].authenticated


class TestRetrySchedule:
    def test_grows_then_caps(self) -> None:
        rng = random.Random(15)
        first, second, third = (mail_retry_delay(n, rng=rng) for n in (1, 2, 3))
        low, high = 1 - MAIL_RETRY_JITTER, 1 + MAIL_RETRY_JITTER
        assert timedelta(seconds=30 * low) <= first <= timedelta(seconds=30 * high)
        assert timedelta(seconds=120 * low) <= second <= timedelta(seconds=120 * high)
        assert second < third
        for attempt in (8, MAIL_MAX_ATTEMPTS, 10**9):
            assert mail_retry_delay(attempt, rng=rng) <= MAIL_RETRY_CAP * high

    def test_jitter_spreads_retries(self) -> None:
        rng = random.Random(15)
        assert len({mail_retry_delay(1, rng=rng) for _ in range(20)}) > 1

    def test_gives_up_after_the_last_attempt(self) -> None:
        now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
        retry_at = mail_retry_at(1, now)
        assert retry_at is not None
        assert retry_at > now
        assert mail_retry_at(MAIL_MAX_ATTEMPTS - 1, now) is not None
        assert mail_retry_at(MAIL_MAX_ATTEMPTS, now) is None
        with pytest.raises(ValueError, match="from 1"):
            mail_retry_delay(0)
