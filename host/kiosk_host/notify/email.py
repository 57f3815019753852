"""Alert e-mails over SMTP: the message, TLS, the login, and what a failure means.

The server is a URL; each form says how the connection is protected, and none falls back to
a weaker one:

* `smtp://HOST[:PORT]` (port 587): STARTTLS, required. A server that does not offer it is
  refused, so that no password and no alert crosses the network in the clear.
* `smtps://HOST[:PORT]` (port 465): TLS from the first byte ("implicit TLS").
* `smtp+insecure://HOST[:PORT]` (port 25): no encryption at all, for a relay on the same
  machine or a test sink; no login is sent over it.

The server's certificate is checked against the system's CAs, or against `ca` (a PEM file)
when given, and must name HOST. The login, when the server wants one, is an `Account`: the
user named in the URL (`smtp://alerts%40example.com@mail.example.com`, `@` written `%40`),
its password from the first line of a file, else from $KIOSK_SMTP_PASSWORD (`read_account`);
never from a command line, where `ps` shows it to everyone, nor from the URL.

Each message carries a stable Message-ID, `<DELIVERY_ID@kiosk-host>`: a message sent again
after a failed attempt is recognisably the same message (mail clients and archives that
de-duplicate drop the copy). Every alert about one case also names the same message in
References, `<case.STORE.CODE@kiosk-host>`, so that mail clients thread a case's messages.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

from kiosk_host.errors import UserError
from kiosk_host.notify.delivery import DeliveryFailed, check_delivery_id
from kiosk_host.notify.message import Rendered
from kiosk_host.secret_file import first_line

PASSWORD_ENV: Final = "KIOSK_SMTP_PASSWORD"
SCHEMES: Final = {"smtp": 587, "smtps": 465, "smtp+insecure": 25}
MESSAGE_ID_DOMAIN: Final = "kiosk-host"
_FORM = "use smtp://HOST[:PORT] (STARTTLS), smtps://HOST[:PORT] (TLS) or smtp+insecure://HOST"


class SmtpSetupError(UserError, ValueError):
    """An SMTP URL, sender or account that cannot work; the message says what to write."""


@dataclass(frozen=True)
class Account:
    """The login at the SMTP server. The password never shows in a repr or a log."""

    user: str
    password: str = field(repr=False)


def read_account(
    url: str,
    password_file: str | None,
    environ: Mapping[str, str] = os.environ,
    option: str = "--smtp-password-file",
) -> Account | None:
    """The account for the SMTP server at `url`: the user the URL names, with the password
    from the first line of `password_file` (given as `option`, named in a refusal), else
    $KIOSK_SMTP_PASSWORD; None when the URL names no user (the server takes mail without a
    login). SmtpSetupError for a user without a password, or a password written into the URL;
    UserError for a password file that cannot be read or starts with an empty line."""
    parts = _parts(url)
    if parts.password is not None:
        raise SmtpSetupError(
            f"SMTP URL {_shown(url)}: the password does not go into the URL; put it in a "
            f"password file or ${PASSWORD_ENV}"
        )
    if not parts.username:
        return None
    if password_file:
        password = first_line(password_file, option)
    elif environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    else:
        raise SmtpSetupError(
            f"SMTP URL {_shown(url)} names the user {unquote(parts.username)!r}: give its "
            f"password in a password file or ${PASSWORD_ENV}"
        )
    return Account(unquote(parts.username), password)


class Mailer:
    """Sends rendered alerts from `sender` through the SMTP server at `url`, logging in with
    `account` when given, trusting the CA certificate in `ca` (PEM) when given, else the
    system's. Each `send` is one connection; every network step waits at most `timeout_s`."""

    def __init__(
        self,
        url: str,
        account: Account | None,
        sender: str,
        ca: Path | None = None,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        parts = _parts(url)
        if parts.password is not None:
            raise SmtpSetupError(f"SMTP URL {_shown(url)}: the password does not go into the URL")
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or SCHEMES[parts.scheme]
        if account is not None and self.scheme == "smtp+insecure":
            raise SmtpSetupError(
                f"SMTP URL {_shown(url)}: no login over an unencrypted connection; use "
                "smtp:// (STARTTLS) or smtps://"
            )
        if ca is not None and not ca.is_file():
            raise SmtpSetupError(f"SMTP CA file {ca}: no such file")
        self.account = account
        address = _address(sender)
        if address is None:
            raise SmtpSetupError(
                f"sender {sender!r}: not an e-mail address (e.g. Kiosk alerts <alerts@example.com>)"
            )
        self.sender: str = address
        self.ca = ca
        self.timeout_s = timeout_s

    def message(self, to: str, rendered: Rendered, delivery_id: str, now: int) -> EmailMessage:
        """The e-mail for one delivery: multipart/alternative, plain text then HTML.
        DeliveryFailed (no retry) for a recipient that is not one e-mail address."""
        msg = EmailMessage()
        msg["Subject"] = rendered.subject
        self._envelope(msg, to, delivery_id, now)
        if rendered.case:  # a case's messages thread together in the mail client
            thread = f"case.{_atom(rendered.store)}.{_atom(rendered.case)}"
            msg["References"] = f"<{thread}@{MESSAGE_ID_DOMAIN}>"
        msg["X-Auto-Response-Suppress"] = "All"  # nor out-of-office replies from Exchange
        msg.set_content(rendered.text)
        msg.add_alternative(rendered.html, subtype="html")
        msg["Content-Language"] = rendered.language  # after the content, which resets Content-*
        return msg

    def send(self, to: str, rendered: Rendered, delivery_id: str, now: int | None = None) -> None:
        """Deliver one alert to `to` (an address, or `mailto:` one). `now` (Unix s) is its
        Date, the present by default. DeliveryFailed when the server does not take it."""
        sent_at = int(datetime.now(UTC).timestamp()) if now is None else now
        self._deliver(self.message(to, rendered, delivery_id, sent_at))

    def send_message(
        self, to: str, msg: EmailMessage, delivery_id: str, now: int | None = None
    ) -> None:
        """Deliver an e-mail made elsewhere (a digest) the same way: From and To set here, its
        own Message-ID and Date kept (else from `delivery_id` and `now`), Auto-Submitted."""
        sent_at = int(datetime.now(UTC).timestamp()) if now is None else now
        self._envelope(msg, to, delivery_id, sent_at)
        self._deliver(msg)

    def _envelope(self, msg: EmailMessage, to: str, delivery_id: str, now: int) -> None:
        """The envelope headers of one delivery: From, To, Date, Message-ID, Auto-Submitted."""
        recipient = _address(to.removeprefix("mailto:"))
        if recipient is None:
            raise DeliveryFailed(
                f"recipient {to!r}: not one e-mail address", retry=False, misconfigured=True
            )
        for name, value in (("From", self.sender), ("To", recipient)):
            del msg[name]
            msg[name] = value
        if msg["Date"] is None:
            msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
        if msg["Message-ID"] is None:
            msg["Message-ID"] = f"<{check_delivery_id(delivery_id)}@{MESSAGE_ID_DOMAIN}>"
        if msg["Auto-Submitted"] is None:
            msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no automatic replies to it

    def _deliver(self, msg: EmailMessage) -> None:
        """One connection: the message handed over, or DeliveryFailed saying why not."""
        envelope_from = parseaddr(self.sender)[1]
        envelope_to = parseaddr(str(msg["To"]))[1]
        try:
            smtp = self._connect()
            try:
                smtp.send_message(msg, from_addr=envelope_from, to_addrs=[envelope_to])
            finally:
                _close(smtp)
        except DeliveryFailed:
            raise
        except smtplib.SMTPRecipientsRefused as why:
            code, text = next(iter(why.recipients.values()))
            raise _refused(
                f"the SMTP server refused the recipient {envelope_to}", code, text, setup=True
            ) from None
        except smtplib.SMTPSenderRefused as why:
            raise _refused(
                f"the SMTP server refused the sender {envelope_from}",
                why.smtp_code,
                why.smtp_error,
                setup=True,
            ) from None
        except smtplib.SMTPAuthenticationError as why:
            user = self.account.user if self.account else "?"
            if 400 <= why.smtp_code < 500:
                raise _refused(
                    f"the SMTP login as {user} failed for now", why.smtp_code, why.smtp_error
                ) from None
            raise DeliveryFailed(
                f"the SMTP server refused the login as {user} ({why.smtp_code} "
                f"{_said(why.smtp_error)}): a setup mistake, check the user in the URL and its "
                f"password (password file or ${PASSWORD_ENV})",
                retry=False,
                misconfigured=True,
            ) from None
        except smtplib.SMTPNotSupportedError as why:
            raise DeliveryFailed(
                f"the SMTP server at {self.host}:{self.port} offers no login ({why}): a setup "
                "mistake, drop the user from the URL or use the server's submission port",
                retry=False,
                misconfigured=True,
            ) from None
        except smtplib.SMTPResponseException as why:
            raise _refused(
                f"the SMTP server at {self.host}:{self.port} answered",
                why.smtp_code,
                why.smtp_error,
            ) from None
        except ssl.SSLCertVerificationError as why:
            raise DeliveryFailed(
                f"the certificate of {self.host}:{self.port} does not verify "
                f"({why.verify_message}): a setup mistake, check the host name in the URL and "
                "the CA file",
                retry=False,
                misconfigured=True,
            ) from None
        except (smtplib.SMTPServerDisconnected, TimeoutError, OSError) as why:
            raise DeliveryFailed(
                f"cannot reach the SMTP server at {self.host}:{self.port}: {_oserror(why)}",
                retry=True,
            ) from None

    def _connect(self) -> smtplib.SMTP:
        """An open connection, encrypted as the URL says and logged in; the caller closes it."""
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        name = socket.gethostname()  # not getfqdn: no DNS look-up before each message
        smtp: smtplib.SMTP
        if self.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(
                self.host, self.port, local_hostname=name, timeout=self.timeout_s, context=context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, local_hostname=name, timeout=self.timeout_s)
        try:
            smtp.ehlo()
            if self.scheme == "smtp":
                if not smtp.has_extn("starttls"):
                    raise DeliveryFailed(
                        f"the SMTP server at {self.host}:{self.port} does not offer STARTTLS: a "
                        "setup mistake, use its TLS port with smtps://, or smtp+insecure:// "
                        "only for a relay on this machine",
                        retry=False,
                        misconfigured=True,
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.account is not None:
                smtp.login(self.account.user, self.account.password)
        except BaseException:
            smtp.close()
            raise
        return smtp


def _parts(url: str) -> SplitResult:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in SCHEMES or not parts.hostname or port == -1:
        raise SmtpSetupError(f"SMTP URL {_shown(url)}: {_FORM}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SmtpSetupError(f"SMTP URL {_shown(url)}: nothing after the port; {_FORM}")
    return parts


def _close(smtp: smtplib.SMTP) -> None:
    """QUIT, and close whatever it answers: the message was taken or refused already."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _shown(url: str) -> str:
    """The URL without whatever stands before its host (a user, a password)."""
    scheme, _, rest = url.partition("://")
    return repr(f"{scheme}://{rest.rpartition('@')[2]}" if rest else url)


def _address(text: str) -> str | None:
    """`text` as one address header value ("Name <a@b>" or "a@b"), or None when it is not one."""
    if "\r" in text or "\n" in text or "," in text:
        return None
    name, addr = parseaddr(text)
    if addr.count("@") != 1 or not all(addr.split("@")):
        return None
    try:
        return str(Address(display_name=name, addr_spec=addr))
    except (ValueError, IndexError):
        return None


def _atom(text: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in text)


def _said(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:200]


def _refused(what: str, code: int, reply: bytes | str, *, setup: bool = False) -> DeliveryFailed:
    """A reply code's meaning (RFC 5321 4.2.1): 4xx is for now, try again; 5xx is final, and
    when `setup` the address refused is the host's settings' mistake."""
    temporary = 400 <= code < 500
    return DeliveryFailed(
        f"{what}: {code} {_said(reply)}", retry=temporary, misconfigured=setup and not temporary
    )


def _oserror(why: BaseException) -> str:
    if isinstance(why, TimeoutError) or isinstance(why.__context__, TimeoutError):
        return "no answer in time"  # smtplib reports a read that timed out as a disconnection
    if isinstance(why, smtplib.SMTPServerDisconnected):
        return f"it closed the connection ({why})"
    if isinstance(why, OSError) and why.strerror:
        return why.strerror
    return str(why) or type(why).__name__
