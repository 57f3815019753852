"""A mosquitto of the tests' own, run with the broker configuration the product ships.

The shipped `host/kiosk_host/broker/mosquitto.conf` is used line for line, except the lines
that say where the broker runs and who may connect: those are replaced so that the broker
listens on a free loopback port, keeps its persistence in its own directory and, unless a
test asks for the shipped authentication, lets anyone in. Every queue, session and
persistence setting is the shipped one. Nothing here touches a system service.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.vm.mpvm import ROOT

BROKER_DIR = ROOT / "host" / "kiosk_host" / "broker"
SHIPPED_CONF = BROKER_DIR / "mosquitto.conf"
SHIPPED_ACL = BROKER_DIR / "acl"
HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

# The shipped lines that say where the broker runs and who may connect; the test broker
# writes its own. Every one of them must be in the shipped file, so that it cannot drift
# into a shape the tests no longer read.
RUNTIME_KEYS = (
    "listener",
    "persistence_location",
    "log_dest",
    "allow_anonymous",
    "password_file",
    "acl_file",
)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def mosquitto_command() -> str:
    """The mosquitto executable (Debian puts it in /usr/sbin, off a normal user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError(
            "mosquitto is not installed: `make system` installs it "
            "(apt-get install mosquitto mosquitto-clients)"
        )
    return found


def shipped_settings(text: str | None = None) -> dict[str, list[str]]:
    """The shipped configuration as {directive: [values]} (comments and blank lines left out)."""
    settings: dict[str, list[str]] = {}
    for line in (SHIPPED_CONF.read_text() if text is None else text).splitlines():
        words = line.split(None, 1)
        if words and not words[0].startswith("#"):
            settings.setdefault(words[0], []).append(words[1] if len(words) > 1 else "")
    return settings


@dataclass(frozen=True)
class TlsListener:
    """A second listener, speaking TLS with the broker's certificate and key (PEM files)."""

    port: int
    certfile: Path
    keyfile: Path


def broker_config(
    port: int,
    directory: Path,
    *,
    auth: bool = False,
    settings: Mapping[str, str | None] | None = None,
    shipped: str | None = None,
    auth_dir: Path | None = None,
    tls: TlsListener | None = None,
) -> str:
    """The shipped configuration with the broker placed in `directory` on `port`.

    `auth` keeps the shipped rule (no anonymous clients) with the password and ACL files in
    `auth_dir` (`directory` when not given). `settings` replaces shipped directives by name
    (None removes one, so that mosquitto's default applies), for tests that show what a
    shipped value is for. `tls` adds a TLS listener; the same clients and ACL apply to both.
    """
    text = SHIPPED_CONF.read_text() if shipped is None else shipped
    changes = dict(settings or {})
    seen: set[str] = set()
    lines = []
    for line in text.splitlines():
        words = line.split(None, 1)
        key = words[0] if words and not words[0].startswith("#") else None
        if key in RUNTIME_KEYS:
            seen.add(key)
            continue
        if key is not None and key in changes:
            value = changes.pop(key)
            if value is not None:
                lines.append(f"{key} {value}")
            continue
        lines.append(line)
    missing = [k for k in RUNTIME_KEYS if k not in seen]
    if missing:
        raise ValueError(f"the shipped mosquitto.conf has no {', '.join(missing)} line")
    lines += [f"{k} {v}" for k, v in changes.items() if v is not None]
    lines += [
        "",
        "# -- the test broker's own placement --",
        f"listener {port} {HOST}",
    ]
    if tls is not None:
        lines += [
            f"listener {tls.port} {HOST}",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
        ]
    lines += [
        f"persistence_location {directory}/",
        f"log_dest file {directory}/mosquitto.log",
    ]
    if auth:
        files = auth_dir or directory
        lines += [
            "allow_anonymous false",
            f"password_file {files}/passwd",
            f"acl_file {files}/acl",
        ]
    else:
        lines.append("allow_anonymous true")
    if os.geteuid() == 0:
        # As root, mosquitto would switch to the `mosquitto` user, who cannot enter a
        # test's private temporary directory.
        lines.append("user root")
    return "\n".join(lines) + "\n"


def _process_state(pid: int) -> str:
    """The state letter of a Linux process (R running, S sleeping, T stopped, ...)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


class Mosquitto:
    """One mosquitto process on a free loopback port, with its config, data and log in
    `directory` (a new temporary one when not given). Stops itself on close()."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        settings: Mapping[str, str | None] | None = None,
        auth_dir: Path | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """`users` ({username: password}) turns on the shipped authentication, with `acl`
        as the ACL file (the shipped example when not given). `auth_dir` turns it on with the
        `passwd` and `acl` files already there (as provisioning writes them). `tls` (the
        broker's certificate and key) adds a TLS listener on `tls_port`."""
        self._own_dir = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-")) if directory is None else directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        listener = None
        if tls is not None and self.tls_port is not None:
            listener = TlsListener(self.tls_port, *tls)
        self.command = mosquitto_command()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            broker_config(
                self.port,
                self.dir,
                auth=users is not None or auth_dir is not None,
                settings=settings,
                auth_dir=auth_dir,
                tls=listener,
            )
        )
        if users is not None:
            self._write_passwords(users)
            (self.dir / "acl").write_text(SHIPPED_ACL.read_text() if acl is None else acl)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def log(self) -> str:
        """What mosquitto logged so far, for failure messages."""
        parts = []
        for name in ("stderr.log", "mosquitto.log"):
            path = self.dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def _write_passwords(self, users: Mapping[str, str]) -> None:
        passwd = self.dir / "passwd"
        passwd.write_text("")
        tool = shutil.which("mosquitto_passwd") or "mosquitto_passwd"
        for name, password in users.items():
            subprocess.run(
                [tool, "-b", str(passwd), name, password],
                check=True,
                capture_output=True,
                timeout=10,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start mosquitto and return once its port accepts connections."""
        if self.running():
            return
        with (self.dir / "stderr.log").open("ab") as err:
            self.proc = subprocess.Popen(
                [self.command, "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # a Ctrl-C in the terminal is pytest's, not its
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"mosquitto did not listen on {self.port} in {timeout} s:\n{self.log}"
                    ) from None
                time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, as a service manager stops it: mosquitto saves its persistence first."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)  # a frozen broker acts on it when it resumes
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: whatever was not saved yet is lost."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def freeze(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGSTOP: the broker hangs with every connection open, as a wedged broker or a dead
        route looks to a client. Returns once the process has stopped."""
        proc = self.proc
        if proc is None:
            raise RuntimeError("mosquitto is not running")
        os.kill(proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while _process_state(proc.pid) not in ("T", "t"):
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not stop on SIGSTOP")
            time.sleep(0.002)

    def thaw(self) -> None:
        """SIGCONT: the broker carries on where freeze() left it."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its password and ACL files again."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGHUP)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and remove the directory it made for itself."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.close()
