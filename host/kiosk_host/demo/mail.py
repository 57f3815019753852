"""The demo's mail server: takes what the aggregator sends managers and keeps each as a file.

aiosmtpd (the SMTP server of the Python project's own aio-libs family) listens on loopback;
each message it is given is written to `folder` as NNNN.eml, which any mail program opens,
and reported to `on_mail` so that the demo can print it as it arrives.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session


class _Keep:
    def __init__(self, folder: Path, on_mail: Callable[[EmailMessage, Path], None]) -> None:
        self.folder = folder
        self.on_mail = on_mail

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        data = envelope.content if isinstance(envelope.content, bytes) else b""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{len(list(self.folder.glob('*.eml'))) + 1:04d}.eml"
        path.write_bytes(data)
        message = email.message_from_bytes(data, policy=email.policy.default)
        if isinstance(message, EmailMessage):
            self.on_mail(message, path)
        return "250 kept"


class MailSink:
    """A plain SMTP server on 127.0.0.1:`port` keeping every message in `folder`."""

    def __init__(
        self, port: int, folder: Path, on_mail: Callable[[EmailMessage, Path], None]
    ) -> None:
        self.port = port
        self.folder = folder
        self._keep = _Keep(folder, on_mail)
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        """What `serve --smtp` is given: a local relay, no TLS, no login."""
        return f"smtp+insecure://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again, after `stop`: on the same port)."""
        self._controller = Controller(self._keep, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
