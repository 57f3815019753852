"""The store's mosquitto: its settings written beside the accounts, and its reload after changes.

`kiosk-host broker init` writes `mosquitto.conf` into the broker folder (`var/broker/` by
default), where provisioning keeps the password and ACL files: the settings the product ships
(`host/kiosk_host/broker/mosquitto.conf`), every queue, session and persistence setting as it
is there, with the lines that say where this broker runs pointing into that folder. Its state
(the persistence database, the log and the pid file) goes into `state/` inside it.

Started as root, mosquitto gives up root for the `mosquitto` user before it reads the
password and ACL files, and reads them again as that user at every reload: so `init` gives
those files and `state/` to that user, as Debian's own package does for `/etc/mosquitto` and
`/var/lib/mosquitto`, and says so in the settings (`user mosquitto`). Run by anyone else,
mosquitto stays that user and the files stay theirs.

Provisioning changes the accounts; mosquitto reads them again on SIGHUP. `reload()` finds the
running broker by the pid file its settings name and signals it.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import signal
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kiosk_host.errors import UserError
from kiosk_host.fleet import provision
from kiosk_host.shipped import BROKER_SETTINGS

SHIPPED_CONF = BROKER_SETTINGS / "mosquitto.conf"
CONF = "mosquitto.conf"
STATE = "state"  # the broker's own files, inside the broker folder: database, log, pid file
BROKER_USER = "mosquitto"  # whom mosquitto becomes when started as root (Debian's package too)
DEFAULT_PORT = 1883

# The shipped lines that say where the broker runs, who may connect and where it writes: each
# use of the shipped settings (the store's broker, the demo's) writes its own.
PLACEMENT_KEYS = frozenset(
    {
        "listener", "port", "bind_address", "bind_interface", "socket_domain",
        "persistence_location", "log_dest", "pid_file", "user", "include_dir",
        "per_listener_settings", "allow_anonymous", "password_file", "acl_file", "psk_file",
    }
)  # fmt: skip
# The options mosquitto.conf(5) gives to the listener above them ("Listeners"); every other
# option is global, wherever it stands.
LISTENER_KEYS = frozenset(
    {
        "http_dir", "max_connections", "max_qos", "max_topic_alias", "mount_point", "protocol",
        "use_username_as_clientid", "websockets_headers_size",
        "cafile", "capath", "certfile", "ciphers", "ciphers_tls1.3", "crlfile", "dhparamfile",
        "keyfile", "require_certificate", "tls_engine", "tls_engine_kpass_sha1", "tls_keyform",
        "tls_version", "use_identity_as_username", "use_subject_as_username", "psk_hint",
    }
)  # fmt: skip
TLS_KEYS = frozenset({"cafile", "capath", "certfile", "keyfile", "psk_hint"})


class BrokerSetupError(UserError):
    """The broker's settings cannot be written or its process not reached; the message says
    what to do."""


def directives(text: str) -> list[tuple[str, str]]:
    """(key, the rest of the line) of every setting, comments and blank lines left out."""
    found = []
    for line in text.splitlines():
        words = line.split(None, 1)
        if words and not words[0].startswith("#"):
            found.append((words[0], words[1].strip() if len(words) > 1 else ""))
    return found


def compose_config(
    shipped: str,
    header: Sequence[str],
    own_title: str,
    own: Sequence[str],
    listener: str,
    carried: frozenset[str],
) -> str:
    """The shipped settings `shipped` placed anew: its global settings as they are, then `own`
    (where this broker runs and who may connect), then one listener (`listener`: PORT [ADDRESS])
    with those settings of the shipped plain listener that are in `carried`. A listener's
    options must follow its `listener` line, so the global ones all go before it."""
    general: list[str] = []
    default: list[tuple[str, str]] = []  # listener settings before any `listener` line
    listeners: list[list[tuple[str, str]]] = []
    for key, value in directives(shipped):
        if key == "listener":
            listeners.append([])
        elif key in LISTENER_KEYS:
            (listeners[-1] if listeners else default).append((key, value))
        elif key not in PLACEMENT_KEYS:
            general.append(f"{key} {value}".rstrip())
    plain = next((lst for lst in listeners if not TLS_KEYS & {k for k, _ in lst}), default)
    lines = [
        *header,
        "",
        "# -- the shipped settings (global) --",
        *general,
        "",
        own_title,
        *own,
        "",
        "# -- its one listener: the settings below this line are the listener's --",
        f"listener {listener}",
        *(f"{k} {v}".rstrip() for k, v in plain if k in carried),
    ]
    return "\n".join(lines) + "\n"


def mosquitto_program() -> str:
    """The mosquitto executable (Debian puts it in /usr/sbin, off a normal user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which(
        "mosquitto", path="/usr/sbin:/usr/local/sbin:/sbin"
    )
    if found is None:
        raise BrokerSetupError("mosquitto is not installed: apt-get install mosquitto")
    return found


def start_command(broker_dir: Path) -> str:
    """The command that starts the broker in the background, as a person types it."""
    conf = shlex.quote(str(broker_dir / CONF))
    return f"{mosquitto_program()} -c {conf} -d"


# -- who the broker runs as ------------------------------------------------------------------


def _broker_account() -> pwd.struct_passwd | None:
    """The user mosquitto becomes when started by root; None when this process is not root
    (mosquitto then stays whoever starts it)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(BROKER_USER)
    except KeyError:
        raise BrokerSetupError(
            f"there is no user {BROKER_USER}, whom mosquitto becomes when root starts it: "
            "install mosquitto from Debian's packages (apt-get install mosquitto), which makes it"
        ) from None


def _closed_to(folder: Path, account: pwd.struct_passwd) -> Path | None:
    """The first folder on the way to `folder` that `account` may not enter, if any."""
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    for step in [*reversed(folder.parents), folder]:
        st = step.stat()
        if st.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return step
    return None


def _settings_user(conf: Path) -> str | None:
    """The `user` the written settings name, if any."""
    try:
        text = conf.read_text()
    except OSError:
        return None
    users = [v for k, v in directives(text) if k == "user"]
    return users[-1] if users else None


def hand_over(broker_dir: Path) -> None:
    """Give the password and ACL files to the user the broker's settings name, when this
    process is root and the settings name one: provisioning, run as root, writes them as root,
    and mosquitto reads them again as that user at each reload."""
    if os.geteuid() != 0:
        return
    user = _settings_user(broker_dir / CONF)
    if user is None or user == "root":
        return
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return  # mosquitto refuses to start then, and says so in its log
    for name in ("passwd", "acl"):
        path = broker_dir / name
        if path.exists():
            os.chown(path, account.pw_uid, account.pw_gid)


# -- init ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Initialised:
    """What `init` wrote, and how to start the broker; no secret in it."""

    conf: Path
    state: Path
    port: int
    user: str | None  # whom the broker runs as when root starts it; None: whoever starts it
    accounts: list[provision.Aggregator]
    start: str  # the command that starts it

    def lines(self) -> list[str]:
        owner = (
            f"; passwd, acl and state/ belong to {self.user}, the user mosquitto runs as "
            "when root starts it"
            if self.user
            else ""
        )
        return [
            f"broker settings written to {self.conf}: port {self.port}, the accounts in "
            f"{self.conf.parent / 'passwd'} and {self.conf.parent / 'acl'}, its database, log "
            f"and pid file in {self.state}{owner}",
            *(provision.aggregator_line(a) for a in self.accounts),
        ]


def broker_config(broker_dir: Path, port: int, user: str | None) -> str:
    """The store broker's settings: the shipped ones, placed in `broker_dir` (absolute)."""
    state = broker_dir / STATE
    shipped = SHIPPED_CONF.read_text()
    # The log goes to a file of its own; a shipped `log_dest topic` stays, for the aggregator
    # reads the broker's notices there.
    topic_logs = [
        f"log_dest {v}" for k, v in directives(shipped) if k == "log_dest" and v == "topic"
    ]
    own = [
        f"persistence_location {state}/",
        f"log_dest file {state}/mosquitto.log",
        *topic_logs,
        f"pid_file {state}/mosquitto.pid",  # how provisioning finds the broker to reload it
        "allow_anonymous false",
        f"password_file {broker_dir}/passwd",
        f"acl_file {broker_dir}/acl",
    ]
    if user is not None:
        own.append(f"user {user}")
    header = [
        f"# Written by `kiosk-host broker init` from {SHIPPED_CONF}: the shipped settings,",
        "# then where this broker runs. Edit the shipped file and run `broker init` again.",
    ]
    return compose_config(
        shipped, header, "# -- this broker's own --", own, str(port), LISTENER_KEYS
    )


def init(broker_dir: Path = provision.DEFAULT_BROKER_DIR, port: int = DEFAULT_PORT) -> Initialised:
    """Write the broker's settings into `broker_dir`, with the aggregator's and the fleet
    tools' accounts (made if missing), and give its files to the user it will run as."""
    if not 0 < port < 65536:
        raise BrokerSetupError(f"--port {port}: use a port number 1..65535")
    program = mosquitto_program()  # refused before anything is written
    account = _broker_account()
    broker_dir.mkdir(parents=True, exist_ok=True)
    where = broker_dir.resolve()
    closed = None if account is None else _closed_to(where, account)
    if account is not None and closed is not None:
        raise BrokerSetupError(
            f"mosquitto, started as root, runs as {account.pw_name}, who may not enter "
            f"{closed} (mode {stat.S_IMODE(closed.stat().st_mode):04o}): give --dir a "
            f"folder it can reach, such as /var/lib/kiosk/broker, or let it in "
            f"(chmod o+x {shlex.quote(str(closed))})"
        )
    accounts = [provision.ensure_aggregator(broker_dir), provision.ensure_fleet(broker_dir)]
    state = where / STATE
    state.mkdir(exist_ok=True)
    user = None
    if account is not None:
        user = account.pw_name
        os.chown(state, account.pw_uid, account.pw_gid)
        for old in state.iterdir():  # a database or log an earlier broker left as root
            os.chown(old, account.pw_uid, account.pw_gid)
    provision.write_file(broker_dir / CONF, broker_config(where, port, user))
    hand_over(broker_dir)
    start = f"{program} -c {shlex.quote(str(broker_dir / CONF))} -d"
    return Initialised(broker_dir / CONF, broker_dir / STATE, port, user, accounts, start)


# -- reload ----------------------------------------------------------------------------------


def running_pid(broker_dir: Path) -> int | None:
    """The pid of the mosquitto running on `broker_dir`'s settings, from the pid file they
    name; None when none runs (no pid file, or one left by a broker that was killed)."""
    files = [v for k, v in directives(_read(broker_dir / CONF)) if k == "pid_file"]
    if not files:
        return None
    try:
        pid = int(Path(files[-1]).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "PID (NAME) STATE ...": a zombie (Z) has exited, whatever its name
    name, _, rest = stat_line.partition("(")[2].rpartition(")")
    return pid if name == "mosquitto" and rest.split()[:1] != ["Z"] else None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def reload(broker_dir: Path) -> str:
    """Tell the broker running on `broker_dir`'s settings to read its accounts again; what
    happened, in one line for a person."""
    if not (broker_dir / CONF).exists():
        return (
            f"no broker settings in {broker_dir}: reload your broker (SIGHUP) so that it reads "
            f"the accounts, or run `kiosk-host broker init --dir {shlex.quote(str(broker_dir))}`"
        )
    pid = running_pid(broker_dir)
    if pid is None:
        return f"no running broker: start it with {start_command(broker_dir)}"
    try:
        os.kill(pid, signal.SIGHUP)
    except PermissionError:
        return (
            f"the broker (pid {pid}) belongs to another user: reload it as that user "
            f"(sudo kill -HUP {pid})"
        )
    except ProcessLookupError:
        return f"no running broker: start it with {start_command(broker_dir)}"
    return f"broker reloaded (pid {pid}): it reads the accounts again"


def accounts_changed(broker_dir: Path) -> str:
    """After provisioning changed the accounts: the files given to the broker's user, and
    the broker reloaded; what happened, in one line for a person."""
    hand_over(broker_dir)
    return reload(broker_dir)
