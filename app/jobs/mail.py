"""Mail for notifications (spec api-v2 section 8): the SMTP server from `SMTP_URL`, the mail a
notification makes, one sending attempt, and the retry schedule.

This module only sends; the mail job decides what is owed (`Notification.mail_status`) and
records each outcome. `send_mail` never raises for server or network trouble: it answers a
`MailResult` that says whether the mail went, may go on a later attempt
(`TEMPORARY_FAILURE`: the server is down, slow, answers 4xx, refuses our credentials or our
sender, or TLS fails), or never will (`PERMANENT_FAILURE`: the server refused this recipient
or this message with a 5xx; `UNKNOWN`: the message was sent and no answer to it came, so the
server may have accepted it, and mail goes at most once). Only what is
about this one mail is permanent; a fault of the server or of the configuration is retried
with backoff (`mail_retry_delay`) so that the operator can fix it before `MAIL_MAX_ATTEMPTS`
run out, and mails owed meanwhile are not lost.

`SMTP_URL` forms:

- `smtp://[user[:password]@]host[:port]`: port 25 by default; STARTTLS is used whenever the
  server offers it (with the certificate verified), otherwise the session stays plain text.
  Credentials then cross the network in clear unless the server offers STARTTLS: use it only
  on a trusted network or with a server that offers STARTTLS.
- `smtps://[user[:password]@]host[:port]`: implicit TLS from the first byte, port 465 by
  default, certificate verified.

User and password are percent-decoded (`%40` for `@`, `%3A` for `:`). The password is never
part of an error message, a `repr` or a `MailResult`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from aiosmtplib.response import SMTPResponse
from email_validator import EmailNotValidError, validate_email

from app.core.config import ConfigurationError, Settings

__all__ = [
    "MAIL_MAX_ATTEMPTS",
    "MAIL_RETRY_BASE",
    "MAIL_RETRY_CAP",
    "MAIL_RETRY_FACTOR",
    "MAIL_RETRY_JITTER",
    "MailOutcome",
    "MailResult",
    "OutgoingMail",
    "SmtpServer",
    "mail_retry_at",
    "mail_retry_delay",
    "notification_mail",
    "parse_smtp_url",
    "send_mail",
    "smtp_server",
    "web_link",
]

# Retries of a mail that failed temporarily: 30 s, 2 min, 8 min, 32 min, ~2 h, then every
# 6 h (each +-20 % so that mails failed together do not retry together). Ten attempts span
# about a day: a mail server down overnight still gets its mail, a broken configuration
# stops being tried the next day (the notification itself stays readable in the app).
MAIL_RETRY_BASE = timedelta(seconds=30)
MAIL_RETRY_FACTOR = 4
MAIL_RETRY_CAP = timedelta(hours=6)
MAIL_RETRY_JITTER = 0.2
MAIL_MAX_ATTEMPTS = 10

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
# What the server said is kept for the delivery's record, not the server's whole essay.
_ERROR_MAX_CHARS = 300
_SUBJECT_MAX_CHARS = 120
_SUBJECT_PREFIX = "[Tasks]"
# Control characters (C0, DEL, C1) and Unicode's own line and paragraph separators: none of
# them belongs in a one-line header, and some mail software breaks lines on the last two.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")

# The first words of the subject, per notification kind (spec api-v2 section 8).
_KIND_SUBJECTS = {
    "assigned": "Assigned to you",
    "invited": "Invitation",
    "commented": "New comment",
    "reminder": "Reminder",
    "role_changed": "Your role changed",
    "removed": "Removed from project",
    "webhook_disabled": "Webhook disabled",
}


@dataclass(frozen=True)
class SmtpServer:
    """Where mail goes, parsed from `SMTP_URL` (see the module docstring for the forms)."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """The server for logs and messages: the URL without its password."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def smtp_server(settings: Settings) -> SmtpServer | None:
    """The server of `SMTP_URL`, or None when it is unset (then no mail is sent).

    Raises `ConfigurationError` for a URL that is not one of the forms above; its message
    names the problem and never repeats the URL (it may hold a password).
    """
    if settings.smtp_url is None:
        return None
    return parse_smtp_url(settings.smtp_url.get_secret_value())


def parse_smtp_url(raw: str) -> SmtpServer:
    """`SMTP_URL`'s value as an `SmtpServer`; see `smtp_server`."""
    try:
        parts = urlsplit(raw.strip())
        scheme = parts.scheme.lower()
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        # urllib's messages may quote parts of the URL: none of them is repeated.
        raise _bad_url("is not a valid URL (is a port out of range or not a number?)") from None
    if scheme not in _DEFAULT_PORTS:
        raise _bad_url("must start with smtp:// or smtps://")
    if not hostname:
        raise _bad_url("must name a host, e.g. smtp://mail.example.com:587")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise _bad_url("must be scheme://[user[:password]@]host[:port] with nothing after it")
    if port == 0:
        raise _bad_url("has port 0; give the server's port or leave it out")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise _bad_url("has a password but no user name")
    return SmtpServer(
        host=hostname,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        implicit_tls=scheme == "smtps",
        username=username or None,
        password=password if username else None,
    )


def _bad_url(problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"SMTP_URL {problem}. Expected smtp://[user[:password]@]host[:port] (STARTTLS when "
        "offered) or smtps://... (implicit TLS); percent-encode special characters in the "
        "user and password."
    )


@dataclass(frozen=True)
class OutgoingMail:
    """One plain-text mail to one recipient. `subject` is a single header-safe line."""

    to: str
    subject: str
    text: str


def web_link(public_url: str, *, project_id: int | None = None, task_id: int | None = None) -> str:
    """The web client's deep link to a task (preferred) or a project under `PUBLIC_URL`."""
    base = public_url.rstrip("/")
    if task_id is not None:
        return f"{base}/?task={task_id}"
    if project_id is not None:
        return f"{base}/?project={project_id}"
    return f"{base}/"


def notification_mail(
    *,
    to: str,
    kind: str,
    message: str,
    project: tuple[int, str] | None,
    task: tuple[int, str] | None,
    public_url: str | None,
) -> OutgoingMail:
    """The mail for one notification: `project` and `task` are (id, name or title).

    Names and titles are user data: in the subject every control character (CR and LF
    among them) becomes a space, so no header can be added through them; in the body only
    line breaks and tabs are kept.
    """
    about = task[1] if task is not None else project[1] if project is not None else ""
    about = _one_line(about)
    lead = _KIND_SUBJECTS.get(kind, "Notification")
    subject = f"{_SUBJECT_PREFIX} {lead}" + (f": {about}" if about else "")
    if len(subject) > _SUBJECT_MAX_CHARS:
        subject = subject[: _SUBJECT_MAX_CHARS - 1].rstrip() + "…"

    lines = [_body_text(message).strip() or lead, ""]
    if task is not None:
        lines.append(f"Task: {_one_line(task[1])}")
    if project is not None:
        lines.append(f"Project: {_one_line(project[1])}")
    if public_url:
        link = web_link(
            public_url,
            project_id=project[0] if project is not None else None,
            task_id=task[0] if task is not None else None,
        )
        lines += ["", f"Open it: {link}"]
    lines += [
        "",
        "-- ",
        "You get this mail because of a notification for you in Tasks.",
    ]
    return OutgoingMail(to=to, subject=subject, text="\n".join(lines) + "\n")


def _one_line(value: str) -> str:
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()


def _body_text(value: str) -> str:
    unified = value.replace("\r\n", "\n").replace("\r", "\n")
    return _BODY_CONTROL.sub(" ", unified)


class MailOutcome(enum.StrEnum):
    SENT = "sent"
    # Try again later (mail_retry_delay): the server or the configuration may recover.
    TEMPORARY_FAILURE = "temporary_failure"
    # Never: the server refused this recipient or this message for good.
    PERMANENT_FAILURE = "permanent_failure"
    # Never either: the message was sent, and its answer never came (a timeout, a connection
    # lost). The server may have accepted it, and a mail is sent at most once.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class MailResult:
    outcome: MailOutcome
    # What went wrong, short and safe to store and show (never the password).
    error: str | None = None

    @property
    def sent(self) -> bool:
        return self.outcome is MailOutcome.SENT

    @property
    def retry(self) -> bool:
        return self.outcome is MailOutcome.TEMPORARY_FAILURE

    @property
    def permanent(self) -> bool:
        return self.outcome is MailOutcome.PERMANENT_FAILURE

    @property
    def unknown(self) -> bool:
        return self.outcome is MailOutcome.UNKNOWN


class _Withheld(Exception):
    """`before_message` said not to hand the message over."""


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, which knows whether the message has been handed to the server:
    from then on, a timeout or a lost connection leaves its fate unknown. (It counts from the
    DATA command, just before the message: a failure while that command waits for its 354 is
    counted unknown too, the price of not reaching into the protocol.) And the server's
    refusal of the message, if it answered one: aiosmtplib then says RSET, and a timeout or a
    lost connection there would hide that the server did answer."""

    message_sent = False
    refusal: aiosmtplib.SMTPResponseException | None = None
    # Awaited once the envelope is accepted, just before the message; False: withhold it.
    before_message: Callable[[], Awaitable[bool]] | None = None

    async def data(self, message: str | bytes, /, **options: Any) -> SMTPResponse:
        if self.before_message is not None and not await self.before_message():
            raise _Withheld
        self.message_sent = True
        try:
            return await super().data(message, **options)
        except aiosmtplib.SMTPResponseException as exc:
            self.refusal = exc
            raise


async def send_mail(
    server: SmtpServer,
    sender: str,
    mail: OutgoingMail,
    *,
    timeout: float = 10.0,
    before_message: Callable[[], Awaitable[bool]] | None = None,
) -> MailResult:
    """Send `mail` from `sender` in one SMTP session that lasts at most `timeout` seconds.

    `before_message` is awaited once the server has accepted the envelope, just before the
    message itself (the mail job notes there that the mail may reach the server from then
    on); when it answers False the message is withheld, a temporary failure.

    Never raises for server or network trouble (nor for an address that cannot be put in a
    header); see `MailOutcome` for what each answer means.
    """
    if not _header_ok(sender):
        return _temporary(server, "MAIL_FROM cannot be written as a header")
    if not _header_ok(mail.to):
        return MailResult(MailOutcome.PERMANENT_FAILURE, "the recipient is not a valid address")
    to = _in_ascii_where_it_can_be(mail.to)
    message = _message(sender, mail, to)
    client = _Client(
        hostname=server.host,
        port=server.port,
        username=server.username,
        password=server.password,
        use_tls=server.implicit_tls,
        # None: STARTTLS when the server offers it (never with implicit TLS).
        start_tls=False if server.implicit_tls else None,
        # Per network operation; the deadline below bounds the whole session.
        timeout=timeout,
    )
    client.before_message = before_message
    try:
        await _session(client, message, sender, to, asyncio.get_running_loop().time() + timeout)
    except _Withheld:
        return _temporary(server, "withheld before the message was sent")
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refusals = exc.recipients
        if refusals and all(_is_permanent(refusal.code) for refusal in refusals):
            return _permanent(server, _reply(refusals[0].code, refusals[0].message))
        first = refusals[0] if refusals else None
        detail = _reply(first.code, first.message) if first else "recipient refused"
        return _temporary(server, detail)
    except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as exc:
        # About this mail: its recipient, or its content (size, policy).
        reply = _reply(exc.code, exc.message)
        if _is_permanent(exc.code):
            return _permanent(server, reply)
        return _temporary(server, reply)
    except aiosmtplib.SMTPAuthenticationError as exc:
        # The configuration's credentials, not this mail: retried while it gets fixed.
        return _temporary(server, "authentication failed: " + _reply(exc.code, exc.message))
    except aiosmtplib.SMTPResponseException as exc:
        # Refused sender, greeting or HELO: the server's or the configuration's fault.
        return _temporary(server, _reply(exc.code, exc.message))
    except TimeoutError:
        # aiosmtplib's timeouts are TimeoutErrors too.
        no_answer = f"no answer from {server.display} within {timeout:g} s"
        if client.message_sent:
            return _after_the_message(server, client, no_answer)
        return _temporary(server, no_answer)
    except aiosmtplib.SMTPNotSupported as exc:
        # E.g. an internationalized recipient address and a server without SMTPUTF8.
        return _permanent(server, exc.message)
    except aiosmtplib.SMTPException as exc:
        # Connection refused or lost, AUTH or STARTTLS not offered, a certificate refused.
        if client.message_sent:
            return _after_the_message(server, client, exc.message)
        return _temporary(server, exc.message)
    except OSError as exc:
        if client.message_sent:
            return _after_the_message(server, client, f"{type(exc).__name__}: {exc}")
        return _temporary(server, f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return MailResult(MailOutcome.SENT)


async def _session(
    client: aiosmtplib.SMTP, message: EmailMessage, sender: str, to: str, deadline: float
) -> None:
    # Not `aiosmtplib.send`: its context manager says QUIT even when the deadline cancels
    # the session, and waits for the answer, which could double the time a worker is held.
    async with asyncio.timeout_at(deadline):
        await client.connect()
        await client.send_message(message, sender=sender, recipients=[to])
    # Accepted: the mail is sent, whatever becomes of the polite QUIT.
    with contextlib.suppress(aiosmtplib.SMTPException, TimeoutError, OSError):
        async with asyncio.timeout_at(deadline):
            await client.quit()


def _header_ok(value: str) -> bool:
    """Whether `value` can be an address header: no line breaks or other controls (which
    the email package would refuse, or which would start a header of their own)."""
    if _CONTROL.search(value):
        return False
    try:
        EmailMessage()["To"] = value
    except (ValueError, TypeError):
        return False
    return True


def _in_ascii_where_it_can_be(address: str) -> str:
    """The address with its domain in ASCII (`kim@xn--bcher-kva.example`), which every server
    takes, when its local part is ASCII; otherwise as it is, which only a server offering
    SMTPUTF8 takes. Accounts keep their domain in Unicode (`normalize_email`)."""
    try:
        return validate_email(address, check_deliverability=False).ascii_email or address
    except EmailNotValidError:
        return address


def _message(sender: str, mail: OutgoingMail, to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    subject = _one_line(mail.subject)
    if subject.isascii() and "=?" not in subject:
        message["Subject"] = subject
    else:
        # Encoded by the older `Header` and stored as is. Not set as text: the email package
        # decodes an encoded word a title or name spells out (`=?utf-8?q?Hi=0D=0AReply-To:
        # ...?=`) and writes its line breaks out as headers of their own (CPython 3.11); and
        # where the current folder splits a long non-ASCII subject into encoded words it
        # drops the space at the split, so readers would see words run together. Lines stay
        # under 78.
        message.set_raw("Subject", Header(subject, "utf-8", header_name="Subject").encode())
    message["Date"] = format_datetime(datetime.now(UTC))
    # The sender's domain: make_msgid's default looks up this host's FQDN, which may block.
    domain = parseaddr(sender)[1].rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=domain or "localhost")
    # RFC 3834: tells vacation responders and list servers not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    return message


def _is_permanent(code: int) -> bool:
    return 500 <= code <= 599


def _reply(code: int, text: str) -> str:
    return f"{code} {text}" if code > 0 else text


def _temporary(server: SmtpServer, error: str) -> MailResult:
    return MailResult(MailOutcome.TEMPORARY_FAILURE, _safe_error(server, error))


def _permanent(server: SmtpServer, error: str) -> MailResult:
    return MailResult(MailOutcome.PERMANENT_FAILURE, _safe_error(server, error))


def _after_the_message(server: SmtpServer, client: _Client, error: str) -> MailResult:
    """A session that failed after the message was sent: as the server's refusal of it, if
    it answered one (then the failure came after, at RSET); else unknown, since it may have
    accepted it."""
    refusal = client.refusal
    if refusal is not None:
        reply = _reply(refusal.code, refusal.message)
        return (
            _permanent(server, reply) if _is_permanent(refusal.code) else _temporary(server, reply)
        )
    return MailResult(
        MailOutcome.UNKNOWN,
        _safe_error(server, f"{error}, after the message, which it may have accepted"),
    )


def _safe_error(server: SmtpServer, error: str) -> str:
    """`error` on one line, shortened, without the password in any form a server might echo
    (as given, or base64 as AUTH PLAIN and AUTH LOGIN send it)."""
    text = _one_line(_redact(server, error)) or "unknown error"
    text = _redact(server, text)
    if len(text) > _ERROR_MAX_CHARS:
        text = text[: _ERROR_MAX_CHARS - 1] + "…"
    return text


def _redact(server: SmtpServer, text: str) -> str:
    if not server.password:
        return text
    user = (server.username or "").encode()
    password = server.password.encode()
    for secret in (
        server.password,
        _one_line(server.password),
        base64.b64encode(password).decode(),
        base64.b64encode(b"\0" + user + b"\0" + password).decode(),
    ):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def mail_retry_delay(attempt: int, *, rng: random.Random | None = None) -> timedelta:
    """How long to wait after failed attempt number `attempt` (1 for the first) before the
    next: `MAIL_RETRY_BASE` times `MAIL_RETRY_FACTOR` per earlier attempt, at most
    `MAIL_RETRY_CAP`, each +-`MAIL_RETRY_JITTER`."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # The exponent is bounded before the power: attempt numbers are not trusted to be small.
    steps = min(attempt - 1, 32)
    seconds = min(
        MAIL_RETRY_BASE.total_seconds() * MAIL_RETRY_FACTOR**steps,
        MAIL_RETRY_CAP.total_seconds(),
    )
    uniform = rng.uniform if rng is not None else random.uniform
    return timedelta(seconds=seconds * uniform(1 - MAIL_RETRY_JITTER, 1 + MAIL_RETRY_JITTER))


def mail_retry_at(
    attempts: int, now: datetime, *, rng: random.Random | None = None
) -> datetime | None:
    """When to try again after `attempts` failed attempts, or None to give up (the mail is
    then `failed`): the retry schedule and `MAIL_MAX_ATTEMPTS` in one place for the job."""
    if attempts >= MAIL_MAX_ATTEMPTS:
        return None
    return now + mail_retry_delay(attempts, rng=rng)
