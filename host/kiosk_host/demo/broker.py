"""The demo's broker: a private mosquitto, run as a child process of the demo.

It runs with the settings the product ships (`host/kiosk_host/broker/mosquitto.conf`): every
queue, session, persistence and logging setting as it is there. Only where it runs and who
may connect are the demo's own: one listener on 127.0.0.1 at the demo's port, its database
and its log in the demo's folder, and anonymous clients (the demo's kiosks and aggregator
connect without accounts). The configuration is written afresh at every start, beside the
database, so a change to the shipped file reaches the next run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path

from kiosk_host.demo.processes import Child
from kiosk_host.errors import UserError
from kiosk_host.fleet.broker_setup import LISTENER_KEYS as LISTENER_KEYS  # the demo's too
from kiosk_host.fleet.broker_setup import PLACEMENT_KEYS as PLACEMENT_KEYS
from kiosk_host.fleet.broker_setup import compose_config
from kiosk_host.shipped import BROKER_SETTINGS

SHIPPED_CONF = BROKER_SETTINGS / "mosquitto.conf"
HOST = "127.0.0.1"
MISSING = "the demo needs mosquitto: apt-get install mosquitto (make demo installs it)"

# use_username_as_clientid stays behind: it refuses clients without a user name, and the
# demo's kiosks and aggregator connect anonymously on a loopback port nobody else reaches.
CARRIED_LISTENER_KEYS = frozenset({"max_connections", "max_qos", "max_topic_alias", "mount_point"})


class BrokerError(UserError):
    """The demo's mosquitto is missing or did not start; the message says why and where to
    look."""


def mosquitto_command() -> str:
    """The mosquitto executable (Debian puts it in /usr/sbin, off a normal user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which(
        "mosquitto", path="/usr/sbin:/usr/local/sbin:/sbin"
    )
    if found is None:
        raise BrokerError(MISSING)
    return found


def demo_config(shipped: str, port: int, directory: Path, log: Path) -> str:
    """The shipped configuration `shipped` for the demo: its global settings as they are, then
    the demo's own placement, then its one listener on 127.0.0.1:`port` with the per-listener
    settings of the shipped plain listener, its database in `directory`, its log in `log`."""
    own = [
        f"persistence_location {directory}/",
        f"log_dest file {log}",
        "log_dest topic",  # the notices the aggregator reads (refused kiosks), as shipped
        "allow_anonymous true",  # the demo's kiosks and aggregator have no accounts
    ]
    if os.geteuid() == 0:
        # As root, mosquitto would switch to the `mosquitto` user, who may not write here.
        own.append("user root")
    header = [
        f"# Written by `kiosk-host demo` from {SHIPPED_CONF} at every start:",
        "# the shipped settings, then where the demo's broker runs. Edit the shipped file.",
    ]
    own_title = "# -- the demo's own --"
    listener = f"{port} {HOST}"
    return compose_config(shipped, header, own_title, own, listener, CARRIED_LISTENER_KEYS)


def accepts(port: int) -> bool:
    """Whether something accepts a TCP connection on 127.0.0.1:`port` now."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class Mosquitto:
    """A private mosquitto on 127.0.0.1:`port`: its configuration and database in
    `directory`, its log in `log`. `start()` returns once it accepts connections; `stop()`
    (SIGTERM) lets it save its database first."""

    START_S = 15.0
    STOP_S = 10.0

    def __init__(self, port: int, directory: Path, log: Path) -> None:
        self.port = port
        self.directory = directory
        self.log = log
        self.conf = directory / "mosquitto.conf"
        self.child = Child("mosquitto", [mosquitto_command(), "-c", str(self.conf)], log)

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def running(self) -> bool:
        return self.child.running()

    def start(self, timeout: float = START_S) -> None:
        if accepts(self.port):  # else the wait below would take another server for it
            raise BrokerError(f"port {self.port} is in use: choose another (DEMO_MQTT_PORT)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        config = demo_config(SHIPPED_CONF.read_text(), self.port, self.directory, self.log)
        self.conf.write_text(config, encoding="utf-8")
        self.child.start()  # its own output (errors before its log is open) goes to the log
        deadline = time.monotonic() + timeout
        while not accepts(self.port):
            code = self.child.proc.poll() if self.child.proc is not None else None
            if code is not None:
                raise BrokerError(
                    f"mosquitto stopped as it started (exit {code}); see {self.log}:\n"
                    + self.child.log_tail(5)
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"mosquitto did not accept connections on {HOST}:{self.port} in "
                    f"{timeout:.0f} s; see {self.log}"
                )
            time.sleep(0.05)
        if not self.running():  # the port was another's, and mosquitto could not have it
            raise BrokerError(f"mosquitto stopped as it started; see {self.log}")

    def stop(self, timeout: float = STOP_S) -> int | None:
        """SIGTERM (it saves its database and exits), SIGKILL after `timeout` s; the exit
        code, None if it never ran."""
        return self.child.stop(signal.SIGTERM, timeout)
