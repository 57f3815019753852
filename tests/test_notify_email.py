"""Alert e-mails through a real SMTP server (aiosmtpd): STARTTLS, TLS, logins, failures."""

from __future__ import annotations

import contextlib
import email
import email.policy
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from kiosk_host.errors import UserError
from kiosk_host.notify.delivery import DeliveryFailed
from kiosk_host.notify.email import Account, Mailer, SmtpSetupError, read_account
from kiosk_host.notify.message import Rendered, render
from tests.broker import HOST, free_port
from tests.fleet_rig import make_ca, make_server_cert

SENDER = "Kiosk alerts <alerts@example.com>"
USER, PASSWORD = "alerts@example.com", "a long and right password"
T0 = 1_772_543_100  # Tue 3 Mar 2026 13:05 UTC
ALERT = {
    "v": 1,
    "id": "4f1c0f57-3e3c-5d7a-9a39-0f4c8a9f2f11",
    "store": "store-12",
    "ts": T0,
    "type": "case_opened",
    "severity": "info",
    "text": "New case A7K36 at till-1: make it right by Wed 4 Mar 14:05 (24 h)",
    "case": "A7K36",
    "device": "till-kiosk",
    "deadline": T0 + 86_400,
    "station": "till-1",
}


@dataclass
class Inbox:
    """What the SMTP server was given: each message with its envelope, each login tried."""

    messages: list[tuple[str, list[str], EmailMessage, bool]] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient: the reply to RCPT

    async def handle_RCPT(  # aiosmtpd's names for its hooks
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        encrypted = session.ssl is not None or server.transport.get_extra_info("sslcontext")
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed, bool(encrypted)))
        return "250 Message accepted for delivery"

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = (user, password) == (USER, PASSWORD)
        self.logins.append((mechanism, user, ok))
        return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class Certs:
    ca: Path
    other_ca: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throw-away CA and the server's certificate for 127.0.0.1, and a CA that did not sign it."""
    folder = tmp_path_factory.mktemp("smtp-certs")
    ca = make_ca(folder, "mail-ca")
    cert, key = make_server_cert(folder, ca)
    other, _ = make_ca(folder, "other-ca")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    return Certs(ca[0], other, server)


Start = Callable[..., tuple[int, Inbox]]


@pytest.fixture
def smtpd() -> Iterator[Start]:
    """Starts real SMTP servers on free loopback ports: `smtpd(**aiosmtpd_options)`."""
    running: list[Controller] = []

    def start(implicit_tls: ssl.SSLContext | None = None, **options: Any) -> tuple[int, Inbox]:
        inbox = Inbox()
        if options.pop("login", False):
            options |= {"authenticator": inbox.authenticator, "auth_required": True}
        port = free_port()
        controller = Controller(
            inbox, HOST, port, ssl_context=implicit_tls, server_hostname="mail.test", **options
        )
        controller.start()
        running.append(controller)
        return port, inbox

    yield start
    for controller in running:
        controller.stop()


def rendered(language: str = "de") -> Rendered:
    return render(ALERT, language, ZoneInfo("Europe/Berlin"), "https://kiosk.example.com")


def test_starttls_login_and_the_message_as_it_arrives(smtpd: Start, certs: Certs) -> None:
    port, inbox = smtpd(tls_context=certs.server, require_starttls=True, login=True)
    mailer = Mailer(f"smtp://{HOST}:{port}", Account(USER, PASSWORD), SENDER, certs.ca)
    mailer.send("mailto:manager@example.com", rendered("de"), "d-41.1", T0)

    [(envelope_from, envelope_to, msg, encrypted)] = inbox.messages
    assert encrypted and inbox.logins == [("PLAIN", USER, True)]
    assert (envelope_from, envelope_to) == ("alerts@example.com", ["manager@example.com"])
    assert msg["Message-ID"] == "<d-41.1@kiosk-host>"
    assert msg["From"] == SENDER and msg["To"] == "manager@example.com"
    assert msg["Subject"].startswith("[store-12] Neuer Fall A7K36 an till-1")
    assert msg["Date"] == "Tue, 03 Mar 2026 13:05:00 +0000"
    assert msg["Content-Language"] == "de"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["References"] == "<case.store-12.A7K36@kiosk-host>"
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = (part for part in msg.iter_parts())
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert "Fallcode: A7K36" in plain.get_content()
    assert "Dürfen wir es gutmachen?" in plain.get_content()
    assert ">A7K36</span>" in html.get_content()
    assert 'href="https://kiosk.example.com/stores/store-12#cases-card"' in html.get_content()


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_auth_login_and_plain_with_the_right_and_a_wrong_password(
    smtpd: Start, certs: Certs, mechanism: str
) -> None:
    other = {"LOGIN": "PLAIN", "PLAIN": "LOGIN"}[mechanism]
    options = {"tls_context": certs.server, "require_starttls": True, "login": True}
    port, inbox = smtpd(**options, auth_exclude_mechanism=[other])
    url = f"smtp://{HOST}:{port}"
    Mailer(url, Account(USER, PASSWORD), SENDER, certs.ca).send("m@example.com", rendered(), "d-1")
    wrong = Mailer(url, Account(USER, "not the password"), SENDER, certs.ca)
    with pytest.raises(DeliveryFailed) as failed:
        wrong.send("m@example.com", rendered(), "d-2")

    assert inbox.logins == [(mechanism, USER, True), (mechanism, USER, False)]
    assert len(inbox.messages) == 1
    why = failed.value
    assert not why.retry and why.misconfigured
    assert f"refused the login as {USER} (535" in why.reason and "setup mistake" in why.reason
    assert "not the password" not in why.reason and "not the password" not in repr(wrong.account)


def test_a_resend_is_recognisably_the_same_message(smtpd: Start, certs: Certs) -> None:
    port, inbox = smtpd(tls_context=certs.server, require_starttls=True)
    mailer = Mailer(f"smtp://{HOST}:{port}", None, SENDER, certs.ca)
    mailer.send("m@example.com", rendered(), "7c0d.3", T0)
    mailer.send("m@example.com", rendered(), "7c0d.3", T0 + 600)  # the retry, later
    mailer.send("m@example.com", rendered("en"), "7c0d.4", T0)  # another delivery
    ids = [msg["Message-ID"] for _, _, msg, _ in inbox.messages]
    assert ids == ["<7c0d.3@kiosk-host>", "<7c0d.3@kiosk-host>", "<7c0d.4@kiosk-host>"]
    assert inbox.messages[2][2]["Content-Language"] == "en"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # TLS throughout
def test_smtps_is_tls_from_the_first_byte(smtpd: Start, certs: Certs) -> None:
    port, inbox = smtpd(implicit_tls=certs.server, login=True, auth_require_tls=False)
    Mailer(f"smtps://{HOST}:{port}", Account(USER, PASSWORD), SENDER, certs.ca).send(
        "m@example.com", rendered(), "d-1"
    )
    assert inbox.logins == [("PLAIN", USER, True)] and len(inbox.messages) == 1
    assert inbox.messages[0][3]  # encrypted
    with pytest.raises(DeliveryFailed) as plain_to_tls:  # smtp:// to a TLS port: no greeting
        Mailer(f"smtp://{HOST}:{port}", None, SENDER, certs.ca, timeout_s=0.2).send(
            "m@example.com", rendered(), "d-2"
        )
    assert plain_to_tls.value.retry


def test_smtp_requires_starttls_and_never_sends_in_the_clear(smtpd: Start, certs: Certs) -> None:
    port, inbox = smtpd()  # a server without STARTTLS
    with pytest.raises(DeliveryFailed) as failed:
        Mailer(f"smtp://{HOST}:{port}", None, SENDER, certs.ca).send(
            "m@example.com", rendered(), "d"
        )
    assert not failed.value.retry and failed.value.misconfigured
    assert "does not offer STARTTLS" in failed.value.reason
    assert inbox.messages == []
    # A local sink, on purpose: plain, and without a login.
    Mailer(f"smtp+insecure://{HOST}:{port}", None, SENDER).send("m@example.com", rendered(), "d")
    assert len(inbox.messages) == 1 and not inbox.messages[0][3]
    with pytest.raises(SmtpSetupError, match="no login over an unencrypted connection"):
        Mailer(f"smtp+insecure://{HOST}:{port}", Account(USER, PASSWORD), SENDER)


def test_a_certificate_from_another_ca_is_a_setup_mistake(smtpd: Start, certs: Certs) -> None:
    port, inbox = smtpd(tls_context=certs.server, require_starttls=True)
    mailer = Mailer(f"smtp://{HOST}:{port}", None, SENDER, certs.other_ca)
    with pytest.raises(DeliveryFailed) as failed:
        mailer.send("m@example.com", rendered(), "d")
    assert not failed.value.retry and failed.value.misconfigured
    assert "certificate" in failed.value.reason and "does not verify" in failed.value.reason
    assert inbox.messages == []


@pytest.mark.parametrize(
    ("reply", "retry"),
    [("450 4.2.1 Mailbox busy, try later", True), ("452 4.2.2 Mailbox full", True),
     ("550 5.1.1 No such user", False), ("553 5.1.3 Bad address", False)],
)  # fmt: skip
def test_a_4xx_refusal_is_tried_again_and_a_5xx_is_final(
    smtpd: Start, certs: Certs, reply: str, retry: bool
) -> None:
    port, inbox = smtpd(tls_context=certs.server, require_starttls=True)
    inbox.refuse["gone@example.com"] = reply
    with pytest.raises(DeliveryFailed) as failed:
        Mailer(f"smtp://{HOST}:{port}", None, SENDER, certs.ca).send(
            "gone@example.com", rendered(), "d"
        )
    assert failed.value.retry is retry
    assert failed.value.reason == (
        f"the SMTP server refused the recipient gone@example.com: {reply}"
    )
    assert failed.value.misconfigured is not retry


def test_a_server_that_is_not_there_or_silent_is_tried_again(certs: Certs) -> None:
    port = free_port()  # nothing listens
    with pytest.raises(DeliveryFailed) as refused:
        Mailer(f"smtp://{HOST}:{port}", None, SENDER, certs.ca).send(
            "m@example.com", rendered(), "d"
        )
    assert refused.value.retry and "Connection refused" in refused.value.reason
    with contextlib.closing(socket.socket()) as silent:  # takes the connection, never greets
        silent.bind((HOST, 0))
        silent.listen()
        mailer = Mailer(f"smtp://{HOST}:{silent.getsockname()[1]}", None, SENDER, timeout_s=0.3)
        with pytest.raises(DeliveryFailed) as quiet:
            mailer.send("m@example.com", rendered(), "d")
    assert quiet.value.retry and "no answer in time" in quiet.value.reason


def test_a_digest_made_elsewhere_goes_the_same_way(smtpd: Start, certs: Certs) -> None:
    port, inbox = smtpd(tls_context=certs.server, require_starttls=True)
    digest = EmailMessage()
    digest["Subject"] = "Week 10 at store-12"
    digest["Message-ID"] = "<digest.store-12.2026-10@kiosk-host>"
    digest.set_content("14 cases, 12 recovered in time.")
    Mailer(f"smtp://{HOST}:{port}", None, SENDER, certs.ca).send_message(
        "m@example.com", digest, "d-9", T0
    )
    [(_, to, msg, _)] = inbox.messages
    assert to == ["m@example.com"] and msg["From"] == SENDER
    assert msg["Message-ID"] == "<digest.store-12.2026-10@kiosk-host>"  # its own, kept
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Date"] is not None


def test_a_bad_recipient_is_refused_before_anything_is_sent(certs: Certs) -> None:
    mailer = Mailer("smtp://127.0.0.1:1", None, SENDER, certs.ca)
    for bad in ("not an address", "a@example.com, b@example.com", "a@example.com\r\nBcc: x@y"):
        with pytest.raises(DeliveryFailed, match="not one e-mail address") as failed:
            mailer.send(bad, rendered(), "d")
        assert not failed.value.retry
    with pytest.raises(ValueError, match="delivery id"):
        mailer.message("m@example.com", rendered(), "<injected>", T0)


@pytest.mark.parametrize(
    ("url", "says"),
    [("mail.example.com", "use smtp://HOST"), ("http://mail.example.com", "use smtp://HOST"),
     ("smtp://mail.example.com:http", "use smtp://HOST"), ("smtp://", "use smtp://HOST"),
     ("smtp://mail.example.com/inbox", "nothing after the port"),
     ("smtp://u:secret@mail.example.com", "the password does not go into the URL")],
)  # fmt: skip
def test_a_url_that_cannot_work_is_refused_in_one_line(url: str, says: str) -> None:
    with pytest.raises(UserError, match=says) as refused:
        Mailer(url, None, SENDER)
    assert "secret" not in str(refused.value) and "\n" not in str(refused.value)


def test_a_sender_must_be_an_address() -> None:
    with pytest.raises(SmtpSetupError, match="not an e-mail address"):
        Mailer("smtp://mail.example.com", None, "Kiosk alerts")
    assert Mailer("smtp://mail.example.com", None, "a@example.com").port == 587
    assert Mailer("smtps://mail.example.com", None, "a@example.com").port == 465
    assert Mailer("smtp+insecure://localhost", None, "a@example.com").port == 25


def test_the_account_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    url = "smtp://alerts%40example.com@mail.example.com:587"
    secret = tmp_path / "smtp-password"
    secret.write_text("from the file\nignored\n")
    from_file = read_account(url, str(secret), {"KIOSK_SMTP_PASSWORD": "from the environment"})
    assert from_file == Account("alerts@example.com", "from the file")
    from_env = read_account(url, None, {"KIOSK_SMTP_PASSWORD": "from the environment"})
    assert from_env == Account("alerts@example.com", "from the environment")
    assert "from the" not in repr(from_env)
    assert read_account("smtp://mail.example.com", None, {}) is None
    with pytest.raises(SmtpSetupError, match=r"give its password .*KIOSK_SMTP_PASSWORD"):
        read_account(url, None, {})
    (tmp_path / "empty").write_text("")
    with pytest.raises(UserError, match=r"--smtp-password-file .*: its first line is empty"):
        read_account(url, str(tmp_path / "empty"), {})
    with pytest.raises(SmtpSetupError, match="does not go into the URL") as in_url:
        read_account("smtp://alerts:hunter2@mail.example.com", None, {})
    assert "hunter2" not in str(in_url.value)
