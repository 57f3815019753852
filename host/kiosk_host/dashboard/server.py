"""The dashboard's web server: uvicorn in a thread of the aggregator's process.

The address is bound before anything else starts, so that a port in use is reported at once;
`stop()` ends the live streams and lets the requests under way finish.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from kiosk_host.dashboard.app import create_app
from kiosk_host.errors import UserError
from kiosk_host.rules.stores import Stores

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_ADDRESS = re.compile(r"(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>[0-9]{1,5})")


class DashboardError(UserError, ValueError):
    """A dashboard address that cannot be used; the message says which and why."""


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) as (host, port); an empty host listens on every interface.
    ValueError saying what is wrong."""
    m = _ADDRESS.fullmatch(text.strip())
    port = int(m.group("port")) if m else -1
    if m is None or not 0 <= port <= 65535:
        raise DashboardError(
            f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080"
        )
    return (m.group("v6") or m.group("host") or "0.0.0.0"), port


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one); OSError naming the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every response on a kept-alive connection waits for the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as why:
        sock.close()
        raise DashboardError(
            f"the dashboard cannot listen on {host}:{port}: {why.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


class DashboardServer:
    """The app served by uvicorn on its own thread and event loop, on a bound socket."""

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self.app = app
        config = uvicorn.Config(
            app,
            log_config=None,  # the process's logging stays as it is
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="dashboard", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self, timeout: float = START_TIMEOUT_S) -> DashboardServer:
        """Serve, returning once the server accepts requests (RuntimeError if it does not)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the dashboard did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End the live streams, finish the requests under way, and stop."""
        self.app.state.views.changes.closing.set()
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.sock.close()


def serve_dashboard(
    address: str,
    db: str | Path,
    stores: Stores,
    token: str | None,
    *,
    now: Callable[[], float] = time.time,
    cache_s: float = 10.0,
) -> DashboardServer:
    """Start the dashboard over `db` on `address` (HOST:PORT); `.stop()` ends it."""
    sock = listen(*parse_address(address))
    try:
        app = create_app(db, stores, token, now=now, cache_s=cache_s)
    except BaseException:
        sock.close()
        raise
    return DashboardServer(app, sock).start()
