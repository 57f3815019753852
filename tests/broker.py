"""A mosquitto of the tests' own, run with the broker configuration the product ships.

The shipped `host/kiosk_host/broker/mosquitto.conf` is used line for line: only the values
that say where the broker runs are substituted (the listener's port and address, the
persistence folder, the log, the password and ACL files), each in its own line, so every
option stays where it stands and a listener's options stay with their listener
(`use_username_as_clientid` among them). Two variants are deliberate and named:

* `anonymous` (the default when a test gives no accounts): anyone may connect without a user
  name, for the many tests about queues, sessions and the firmware's MQTT client. It leaves out
  `use_username_as_clientid`, which refuses clients without a user name; the security tests
  never use it.
* `tls`: the shipped file's commented TLS listener, uncommented with the test's certificate.

Nothing here touches a system service.
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
import uuid
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


def fresh_session(name: str) -> str:
    """A client id of `name` no earlier test used: a persistent session (an aggregator's)
    stays subscribed on the session's broker after its client leaves and keeps queueing
    what later tests publish, which a test re-using the id, such as the other back-end's run
    of the same test, would be handed as its own."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


# The shipped lines whose values say where the broker runs and who may connect: the test broker
# substitutes their values, in place. Every one of them must be in the shipped file, so that
# it cannot drift into a shape the tests no longer read.
RUNTIME_KEYS = (
    "listener",
    "persistence_location",
    "log_dest",
    "allow_anonymous",
    "password_file",
    "acl_file",
)
# The shipped file's commented TLS listener, uncommented by the `tls` variant.
TLS_LISTENER_KEYS = ("listener", "use_username_as_clientid", "certfile", "keyfile")
# Left out by the anonymous variant: the options that refuse a client without a user name.
ACCOUNT_ONLY_KEYS = ("use_username_as_clientid", "password_file", "acl_file")


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


def _directive(line: str) -> tuple[str | None, str]:
    """(key, value) of a setting line; (None, "") for a comment or a blank line."""
    words = line.split(None, 1)
    if not words or words[0].startswith("#"):
        return None, ""
    return words[0], words[1].strip() if len(words) > 1 else ""


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
    """The shipped configuration, line for line, with the broker placed in `directory` on
    `port`: only the values of the placement lines change, where they stand.

    `auth` keeps the shipped rule (no anonymous clients, client ids bound to accounts) with the
    password and ACL files in `auth_dir` (`directory` when not given); without it the
    anonymous variant lets anyone in (see the module's notes). `settings` replaces global
    directives by name (None removes one, so that mosquitto's default applies), for tests
    that show what a shipped value is for. `tls` uncomments the shipped TLS listener, on its
    own port with the test's certificate and key; the same clients and ACL apply to both.
    """
    text = SHIPPED_CONF.read_text() if shipped is None else shipped
    changes = dict(settings or {})
    files = auth_dir or directory
    seen: set[str] = set()
    lines: list[str] = []
    in_tls = False  # inside the shipped file's commented TLS listener
    tls_seen: set[str] = set()
    for line in text.splitlines():
        commented = line.startswith("#") and not line.startswith("# ")
        key, value = _directive(line[1:] if commented else line)
        if commented:
            if key == "listener":
                in_tls = True
            if not in_tls or key not in TLS_LISTENER_KEYS:
                lines.append(line)
                in_tls = in_tls and key is not None
                continue
            tls_seen.add(key)
            if tls is None or (not auth and key in ACCOUNT_ONLY_KEYS):
                lines.append(line)
            elif key == "listener":
                lines.append(f"listener {tls.port} {HOST}")
            elif key == "certfile":
                lines.append(f"certfile {tls.certfile}")
            elif key == "keyfile":
                lines.append(f"keyfile {tls.keyfile}")
            else:
                lines.append(f"{key} {value}")
            continue
        in_tls = False
        if key is None:
            lines.append(line)
            continue
        seen.add(key)
        if not auth and key in ACCOUNT_ONLY_KEYS:
            lines.append(f"# (left out: the anonymous test broker) {line}")
        elif key == "listener":
            lines.append(f"listener {port} {HOST}")
        elif key == "persistence_location":
            lines.append(f"persistence_location {directory}/")
        elif key == "log_dest" and value != "topic":  # the topic stays: the aggregator reads it
            lines.append(f"log_dest file {directory}/mosquitto.log")
        elif key == "allow_anonymous":
            lines.append(f"allow_anonymous {value if auth else 'true'}")
        elif key == "password_file":
            lines.append(f"password_file {files}/passwd")
        elif key == "acl_file":
            lines.append(f"acl_file {files}/acl")
        elif key in changes:
            changed = changes.pop(key)
            if changed is not None:
                lines.append(f"{key} {changed}")
        else:
            lines.append(line)
    missing = [k for k in RUNTIME_KEYS if k not in seen]
    if missing:
        raise ValueError(f"the shipped mosquitto.conf has no {', '.join(missing)} line")
    if tls is not None and {"listener", "certfile", "keyfile"} - tls_seen:
        raise ValueError("the shipped mosquitto.conf has no commented TLS listener to turn on")
    # New global settings, and mosquitto's own user as root, go before the first listener,
    # where no listener can take them for its own.
    first = next(i for i, line in enumerate(lines) if _directive(line)[0] == "listener")
    extra = [f"{k} {v}" for k, v in changes.items() if v is not None]
    if os.geteuid() == 0:
        # As root, mosquitto would switch to the `mosquitto` user, who cannot enter a
        # test's private temporary directory.
        extra.append("user root")
    lines[first:first] = extra
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
        """`users` ({username: password}) runs the shipped file exactly (no anonymous clients,
        client ids bound to accounts), with `acl` as the ACL file (the shipped example when not
        given). `auth_dir` does the same with the `passwd` and `acl` files already there (as
        provisioning writes them). Without either, the broker is the anonymous variant (see
        the module's notes). `tls` (the broker's certificate and key) turns on the shipped TLS
        listener on `tls_port`."""
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
        self.anonymous = users is None and auth_dir is None
        self.conf.write_text(
            broker_config(
                self.port,
                self.dir,
                auth=not self.anonymous,
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
