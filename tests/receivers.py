"""Real receivers for what the host sends people: an SMTP server (the demo's, on aiosmtpd) and
an HTTP server for webhooks, each on a free loopback port, keeping what they were given;
either can be stopped and started again on the same port (a receiver down for a while)."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kiosk_host.demo.mail import MailSink
from tests.broker import free_port


class SmtpSink:
    """The demo's mail server (kiosk_host.demo.mail) on a free port, its messages kept in a
    temporary folder and in `inbox`, in the order they came."""

    def __init__(self) -> None:
        self.inbox: list[EmailMessage] = []
        self._folder = tempfile.TemporaryDirectory(prefix="smtp-sink-")
        self._sink = MailSink(free_port(), Path(self._folder.name), self._keep)

    def _keep(self, message: EmailMessage, path: Path) -> None:
        self.inbox.append(message)

    @property
    def url(self) -> str:
        return self._sink.url

    def start(self) -> SmtpSink:
        self._sink.start()
        return self

    def stop(self) -> None:
        self._sink.stop()


@dataclass
class Posted:
    """One request the webhook receiver was given."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 answering every POST with `status`, keeping each."""

    port: int = field(default_factory=free_port)
    status: int = 200
    posted: list[Posted] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(size)
                receiver.posted.append(Posted(self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
