"""Signed webhooks to a real HTTP receiver: formats, the signature recipe, what answers mean."""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from kiosk_host.notify.delivery import DeliveryFailed
from kiosk_host.notify.message import Rendered, render
from kiosk_host.notify.webhook import (
    FORMATS,
    WebhookSetupError,
    body_of,
    post_webhook,
    sign,
    verify,
)
from tests.broker import HOST, free_port
from tests.fleet_rig import make_ca, make_server_cert

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"whsec-7f3a9c1e5b2d4f6a8c0e"
T0 = 1_772_543_100  # Tue 3 Mar 2026 13:05 UTC
ALERT: dict[str, Any] = {
    "v": 1,
    "id": "4f1c0f57-3e3c-5d7a-9a39-0f4c8a9f2f11",
    "store": "store-12",
    "ts": T0,
    "type": "breached",
    "severity": "critical",
    "text": "Case A7K36 at till-1 missed its 24 h window (Wed 4 Mar 14:05) <!channel> & co",
    "case": "A7K36",
    "device": "till-kiosk",
    "deadline": T0 + 86_400,
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: it keeps each request and answers as `answers` says
    for the request's path (status, headers), 200 otherwise."""

    url: str
    requests: list[Received] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    texts: dict[str, bytes] = field(default_factory=dict)  # the answer's body, by path


def serve(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    receiver = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name for the method
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            status, headers = receiver.answers.get(self.path, (200, {}))
            text = receiver.texts.get(self.path, b"ok" if status < 300 else b"not this time")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads `requests`; nothing for stderr

    server = ThreadingHTTPServer((HOST, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    receiver.url = f"{'https' if tls else 'http'}://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve()


def rendered(language: str = "en", dashboard: str | None = "https://kiosk.example.com") -> Rendered:
    return render(ALERT, language, ZoneInfo("Europe/Berlin"), dashboard)


def documented_verify() -> Callable[..., bool]:
    """The receiver's recipe exactly as docs/alerts.md prints it, so that the doc cannot drift."""
    doc = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    section = doc.split("### Checking the signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "docs/alerts.md: no python block under 'Checking the signature'"
    assert len(code.group(1).strip().splitlines()) <= 12  # a recipe, not a program
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "docs/alerts.md", "exec"), namespace)
    recipe: Callable[..., bool] = namespace["verify"]
    return recipe


def test_a_signed_post_verifies_by_the_documented_recipe(receiver: Receiver) -> None:
    recipe = documented_verify()
    post_webhook(f"{receiver.url}/hooks/x", "plain", SECRET, rendered(), ALERT, "d-41.1", T0)
    [got] = receiver.requests
    header = got.headers["Kiosk-Signature"]
    assert re.fullmatch(r"t=1772543100,v1=[0-9a-f]{64}", header)
    assert got.headers["Idempotency-Key"] == "d-41.1"
    assert got.headers["Content-Type"].startswith("application/json")
    for check in (recipe, verify):
        assert check(SECRET, header, got.body, T0 + 5)
        assert check(SECRET, header, got.body, T0 + 300)  # within the tolerance
        assert not check(SECRET, header, got.body.replace(b"A7K36", b"A7K37"), T0 + 5)
        assert not check(SECRET, header, got.body + b" ", T0 + 5)
        assert not check(b"another secret", header, got.body, T0 + 5)
        assert not check(SECRET, header, got.body, T0 + 301)  # replayed later
        assert not check(SECRET, header, got.body, T0 - 301)  # or stamped in the future


@pytest.mark.parametrize(
    "header",
    ["", "t=1772543100", "v1=00", "t=abc,v1=00", "t=1772543100,t=1772543100,v1=00",
     "t=١٧٧٢٥٤٣١٠٠,v1=00", "t=1772543100,v1=é", "garbage", ",,,", "t=,v1="],
)  # fmt: skip
def test_the_recipe_and_verify_agree_on_malformed_and_rotated_headers(header: str) -> None:
    recipe, body = documented_verify(), b'{"a":1}'
    assert recipe(SECRET, header, body, T0) is False
    assert verify(SECRET, header, body, T0) is False
    good = sign(SECRET, body, T0)
    rotated = f"{good},v1={'0' * 64}"  # a receiver between two secrets accepts either
    for check in (recipe, verify):
        assert check(SECRET, rotated, body, T0) and check(SECRET, f" {good} ", body, T0)


def test_without_a_secret_nothing_is_signed_but_the_key_is_there(receiver: Receiver) -> None:
    post_webhook(receiver.url, "slack", None, rendered(), ALERT, "d-2", T0)
    post_webhook(receiver.url, "slack", None, rendered(), ALERT, "d-2", T0 + 90)  # a retry
    first, again = receiver.requests
    assert "Kiosk-Signature" not in first.headers
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] == "d-2"
    assert first.body == again.body  # the same delivery says the same thing


def test_plain_is_the_alert_and_its_rendered_text(receiver: Receiver) -> None:
    post_webhook(receiver.url, "plain", SECRET, rendered("de"), ALERT, "d-3", T0)
    doc = json.loads(receiver.requests[0].body)
    assert {k: doc[k] for k in ALERT} == ALERT
    message = doc["message"]
    assert set(message) == {"language", "subject", "headline", "text", "url"}
    assert message["language"] == "de" and "A7K36" in message["subject"]
    assert message["url"] == "https://kiosk.example.com/stores/store-12#cases-card"
    assert "Fallcode: A7K36" in message["text"]


def test_slack_is_text_and_blocks_with_slacks_markup_escaped(receiver: Receiver) -> None:
    post_webhook(receiver.url, "slack", SECRET, rendered(), ALERT, "d-4", T0)
    doc = json.loads(receiver.requests[0].body)
    assert set(doc) == {"text", "blocks"} and "A7K36" in doc["text"]
    kinds = [block["type"] for block in doc["blocks"]]
    assert kinds == ["header", "section", "section", "context", "actions"]
    header, facts, advice, details, actions = doc["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "Case A7K36 missed its deadline"}
    assert facts["text"]["type"] == "mrkdwn" and "*Case code:* `A7K36`" in facts["text"]["text"]
    assert "*Deadline:* Wed 4 Mar 14:05 (CET)" in facts["text"]["text"]
    assert advice["text"]["text"].startswith("*What to do:* ")
    assert "&lt;!channel&gt; &amp; co" in details["elements"][0]["text"]  # shown, not obeyed
    [button] = actions["elements"]
    assert button["type"] == "button" and button["url"].endswith("/stores/store-12#cases-card")
    assert button["text"] == {"type": "plain_text", "text": "Open the store's dashboard"}
    without_link = json.loads(body_of("slack", rendered(dashboard=None), ALERT))
    assert [b["type"] for b in without_link["blocks"]][-1] == "context"


def test_teams_is_a_message_with_one_adaptive_card(receiver: Receiver) -> None:
    post_webhook(receiver.url, "teams", SECRET, rendered("de"), ALERT, "d-5", T0)
    doc = json.loads(receiver.requests[0].body)
    assert doc["type"] == "message"
    [attachment] = doc["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.2"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    texts = [b.get("text") for b in card["body"] if b["type"] == "TextBlock"]
    assert "Kritisch" in texts and "A7K36" in texts
    [facts] = [b for b in card["body"] if b["type"] == "FactSet"]
    assert {"title": "Frist", "value": "Mi, 4. März 14:05 (CET)"} in facts["facts"]
    [action] = card["actions"]
    assert action["type"] == "Action.OpenUrl" and action["title"] == "Dashboard der Filiale öffnen"


def fail(receiver: Receiver, path: str, status: int, headers: dict[str, str]) -> DeliveryFailed:
    receiver.answers[path] = (status, headers)
    with pytest.raises(DeliveryFailed) as failed:
        post_webhook(f"{receiver.url}{path}", "plain", SECRET, rendered(), ALERT, "d", T0)
    return failed.value


def test_what_each_answer_means(receiver: Receiver) -> None:
    later = format_datetime(datetime.fromtimestamp(T0 + 120, UTC), usegmt=True)
    assert fail(receiver, "/a", 500, {}).retry
    assert fail(receiver, "/a", 500, {}).retry_after_s is None
    busy = fail(receiver, "/b", 429, {"Retry-After": "7"})
    assert busy.retry and busy.retry_after_s == 7
    down = fail(receiver, "/c", 503, {"Retry-After": later})
    assert down.retry and down.retry_after_s == 120  # an HTTP date, counted from `now`
    assert fail(receiver, "/d", 408, {}).retry
    gone = fail(receiver, "/secret-path-token", 404, {})
    assert not gone.retry and gone.misconfigured
    assert gone.reason == f"{receiver.url} answered 404 Not Found: not this time"
    assert "secret-path-token" not in gone.reason  # the URL's path is a secret of its own
    assert not fail(receiver, "/e", 400, {}).retry
    moved = fail(receiver, "/f", 301, {"Location": "https://elsewhere.example/"})
    assert not moved.retry and "moved" in moved.reason
    post_webhook(f"{receiver.url}/g", "plain", SECRET, rendered(), ALERT, "d", T0)  # 200
    receiver.answers["/h"] = (202, {})
    post_webhook(f"{receiver.url}/h", "teams", SECRET, rendered(), ALERT, "d", T0)
    # Teams' older connectors say "throttled" in a 200's body.
    receiver.texts["/i"] = b"Microsoft Teams endpoint returned HTTP error 429 to its caller"
    with pytest.raises(DeliveryFailed) as throttled:
        post_webhook(f"{receiver.url}/i", "teams", SECRET, rendered(), ALERT, "d", T0)
    assert throttled.value.retry
    post_webhook(f"{receiver.url}/i", "plain", SECRET, rendered(), ALERT, "d", T0)  # not Teams


def test_a_receiver_that_is_not_there_or_silent_is_tried_again() -> None:
    with pytest.raises(DeliveryFailed) as refused:
        post_webhook(f"http://{HOST}:{free_port()}/x", "plain", None, rendered(), ALERT, "d", T0)
    assert refused.value.retry and "Connection refused" in refused.value.reason
    with socket.socket() as silent:  # takes the connection, never answers
        silent.bind((HOST, 0))
        silent.listen()
        url = f"http://{HOST}:{silent.getsockname()[1]}/x"
        with pytest.raises(DeliveryFailed) as quiet:
            post_webhook(url, "plain", None, rendered(), ALERT, "d", T0, timeout_s=0.2)
    assert quiet.value.retry and "did not answer in time" in quiet.value.reason


def test_https_checks_the_receivers_certificate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "hook-ca")
    cert, key = make_server_cert(tmp_path, ca)
    other, _ = make_ca(tmp_path / "other", "other-ca")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    for hook in serve(tls):
        post_webhook(hook.url, "plain", SECRET, rendered(), ALERT, "d", T0, ca=ca[0])
        assert len(hook.requests) == 1
        with pytest.raises(DeliveryFailed) as untrusted:
            post_webhook(hook.url, "plain", SECRET, rendered(), ALERT, "d", T0, ca=other)
        assert not untrusted.value.retry and untrusted.value.misconfigured
        assert "certificate" in untrusted.value.reason
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca[0]))) as client:
            post_webhook(hook.url, "plain", SECRET, rendered(), ALERT, "d", T0, client=client)
        assert len(hook.requests) == 2


@pytest.mark.parametrize(
    ("url", "fmt", "says"),
    [("hooks.example.com/x", "plain", "webhook URL"), ("ftp://h.example/x", "plain", "webhook URL"),
     ("https://hooks.example.com/x", "discord", "webhook format 'discord': use one of")],
)  # fmt: skip
def test_a_target_that_cannot_work_is_refused_in_one_line(url: str, fmt: str, says: str) -> None:
    with pytest.raises(WebhookSetupError, match=says) as refused:
        post_webhook(url, fmt, None, rendered(), ALERT, "d", T0)
    assert "\n" not in str(refused.value)
    assert set(FORMATS) == {"plain", "slack", "teams"}
