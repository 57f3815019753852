"""Provisioning: a kiosk's identity, first config and board files, and its broker account.

`provision()` writes what the kiosk needs into one folder (`identity.json`, `config.json`,
`board.json`, and `ca.pem` when the broker speaks TLS), adds the kiosk's account to the
broker's password file with `mosquitto_passwd` and its lines to the ACL file, and records it
in the fleet's register (`kiosks.json`), which keeps every kiosk's letter unique within its
store. The broker files live in one folder (`var/broker/` by default): `passwd`, `acl`,
`kiosks.json`, `aggregator.json`, the aggregator's own account, and `fleet.json`, the fleet
tools' account, both made with the first kiosk. Passwords are random, written only to files
only their owner may read, and never printed; so is the kiosk's `ota_key`, which signs its
firmware updates and is written to its identity.json only, never to the broker folder. A
kiosk already provisioned in a folder is refused rather than provisioned again, so its
password and key stay as they were.

The broker binds each client id to its account (`use_username_as_clientid`), so an account is
one connection, one session: a kiosk's is `<store>/<device>` (its client id too), each
aggregator has its own (`kiosk-host`, and `kiosk-host-<name>` for more), and the fleet tools
have theirs (`kiosk-fleet`), never the aggregator's, whose session they would take over.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kiosk_host import __version__
from kiosk_host.errors import UserError
from kiosk_host.shipped import BOARDS, BROKER_SETTINGS
from kiosk_host.wire import topics
from kiosk_host.wire.contract import Contract, Rejection
from kiosk_host.wire.identifiers import check_identifier

SHIPPED_ACL = BROKER_SETTINGS / "acl"
DEFAULT_BROKER_DIR = Path("var/broker")
DEFAULT_DEVICES_DIR = Path("var/devices")
AGGREGATOR = "kiosk-host"  # the aggregator's user name, as the shipped ACL names it
FLEET = "kiosk-fleet"  # the fleet tools' user name, as the shipped ACL names it
# Kiosk letters, as the firmware's wire.KIOSK_LETTERS: capitals without I, L and O.
LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ"
CA_FILE = "ca.pem"  # the name the CA certificate has beside identity.json, on the kiosk too
PASSWORD_BYTES = 24  # 32 URL-safe characters: usable in an mqtt://user:password@ URL as is
OTA_KEY_BYTES = 32  # the kiosk's key for signed firmware updates, as 64 hex characters
_ACL_KIOSKS = "# Per kiosk"  # where the shipped ACL's examples begin; provisioning adds its own


# What `kiosk-host provision` needs for a kiosk (--ca and --letter are optional).
REQUIRED = ("store", "device", "board", "wifi_ssid", "wifi_pass", "broker")


class ProvisionError(UserError, ValueError):
    """Input that cannot be provisioned; the message says what to fix."""


@dataclass(frozen=True)
class Board:
    file: str  # the file in boards/, without .py: what deploy copies to the kiosk as board.py
    name: str  # the board's NAME, as the kiosk reports it in its status
    buttons: int


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Request:
    store: str
    device: str
    board: str
    ssid: str
    wifi_pass: str
    broker: str
    out: Path | None = None  # default: var/devices/<store>/<device>
    letter: str | None = None  # allocated when not given
    ca: Path | None = None
    broker_dir: Path = DEFAULT_BROKER_DIR


@dataclass(frozen=True)
class Aggregator:
    user: str
    credentials: Path  # the file with the aggregator's user name and password
    created: bool  # made by this call


@dataclass(frozen=True)
class Provisioned:
    """What was provisioned, without any secret: safe to print and to log."""

    store: str
    device: str
    letter: str
    board: Board
    user: str
    broker: BrokerAddress
    out: Path
    files: list[str]
    broker_dir: Path
    aggregator: Aggregator
    config: dict[str, Any] = field(repr=False)
    fleet: Aggregator | None = None  # the fleet tools' account

    def lines(self) -> list[str]:
        """What was done, for a person: no secret in it."""
        passwd, acl = self.broker_dir / "passwd", self.broker_dir / "acl"
        out = [
            f"provisioned {self.store}/{self.device}: letter {self.letter}, board "
            f"{self.board.file}, broker {self.broker.url}",
            f"kiosk files in {self.out}: {' '.join(self.files)} (identity.json holds the Wi-Fi "
            f"key, the broker password and the update key: readable by you only)",
            f"broker account {self.user} added to {passwd} and {acl}",
        ]
        if self.aggregator.created:
            out.append(aggregator_line(self.aggregator))
        if self.fleet is not None and self.fleet.created:
            out.append(aggregator_line(self.fleet))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "device": self.device,
            "letter": self.letter,
            "board": self.board.file,
            "user": self.user,
            "broker": self.broker.url,
            "out": str(self.out),
            "files": self.files,
            "passwd": str(self.broker_dir / "passwd"),
            "acl": str(self.broker_dir / "acl"),
            "aggregator": {
                "user": self.aggregator.user,
                "credentials": str(self.aggregator.credentials),
                "created": self.aggregator.created,
            },
            "fleet": None
            if self.fleet is None
            else {
                "user": self.fleet.user,
                "credentials": str(self.fleet.credentials),
                "created": self.fleet.created,
            },
        }


# -- checks ----------------------------------------------------------------------------------


def boards() -> dict[str, Board]:
    """The supported boards, by file name: each file in boards/, read without importing it."""
    found = {}
    for path in sorted(BOARDS.glob("*.py")):
        name, buttons = None, 0
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                key = node.targets[0].id
                if key == "NAME" and isinstance(node.value, ast.Constant):
                    name = str(node.value.value)
                elif key == "BUTTONS" and isinstance(node.value, ast.Tuple):
                    buttons = len(node.value.elts)
        if name and buttons:
            found[path.stem] = Board(path.stem, name, buttons)
    return found


def find_board(wanted: str) -> Board:
    """A board by its file name in boards/ (m5stack_core) or by its NAME (m5stack-core)."""
    known = boards()
    for board in known.values():
        if wanted in (board.file, board.name):
            return board
    raise ProvisionError(
        f"unknown board {wanted!r}: use one of {', '.join(sorted(known))} (the files in boards/)"
    )


def parse_broker(url: str) -> BrokerAddress:
    """The broker the kiosk connects to: mqtt://HOST[:PORT] or mqtts://HOST[:PORT]."""
    parts = urlparse(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ProvisionError(
            f"--broker {url!r} is not a broker address: use mqtt://HOST:PORT, or "
            f"mqtts://HOST:PORT with --ca for TLS"
        )
    if parts.username or parts.password:
        raise ProvisionError(
            "--broker must not carry a user name or password: the kiosk gets an account of its "
            "own; give mqtt://HOST:PORT"
        )
    try:
        port = parts.port
    except ValueError:
        raise ProvisionError(f"--broker {url!r} has a bad port: use a number 1..65535") from None
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)


def check_wifi(ssid: str, key: str) -> None:
    if not 0 < len(ssid.encode()) <= 32:
        raise ProvisionError("--wifi-ssid must be the network's name, 1 to 32 bytes")
    if key and not 8 <= len(key) <= 63:
        raise ProvisionError(
            "--wifi-pass must be 8 to 63 characters (WPA2), or empty for an open network"
        )


def check_ca(ca: Path | None, broker: BrokerAddress) -> None:
    if broker.tls and ca is None:
        raise ProvisionError(
            "mqtts:// needs --ca FILE: the CA certificate (PEM) that signed the broker's "
            "certificate; the kiosk trusts only that CA"
        )
    if not broker.tls and ca is not None:
        raise ProvisionError(
            "--ca is for a TLS broker: give --broker mqtts://HOST:PORT, or leave --ca out"
        )
    if ca is None:
        return
    try:
        text = ca.read_text()
        ssl.create_default_context(cafile=str(ca))
    except (OSError, UnicodeDecodeError, ssl.SSLError) as why:
        raise ProvisionError(
            f"--ca {ca}: not a readable PEM CA certificate ({why}); give the CA's .pem file"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ProvisionError(f"--ca {ca}: no PEM certificate in it; give the CA's .pem file")


def pick_letter(store: str, wanted: str | None, taken: dict[str, str]) -> str:
    """The kiosk's letter in its store: `wanted` when it is free, else the first free one.
    `taken` maps the store's letters in use to their devices."""
    free = [c for c in LETTERS if c not in taken]
    if wanted is None:
        if not free:
            raise ProvisionError(
                f"store {store} has {len(LETTERS)} kiosks and every letter is taken; "
                f"remove a kiosk from {store} first"
            )
        return free[0]
    letter = wanted.upper()
    if len(letter) != 1 or letter not in LETTERS:
        raise ProvisionError(
            f"--letter {wanted!r} is not a kiosk letter: use one capital of {LETTERS} "
            f"(no I, L or O, which read like 1 and 0)"
        )
    if letter in taken:
        raise ProvisionError(
            f"letter {letter} is taken in store {store} by {taken[letter]}: choose one of "
            f"{' '.join(free) or '(none left)'}, or leave --letter out to get the first free one"
        )
    return letter


def default_config(board: Board, device: str) -> dict[str, Any]:
    """The product's default settings for a kiosk on `board`: the scale is its buttons."""
    return {
        "v": 1,
        "prompt": "How did we do today?",
        "language": "en",
        "scale": board.buttons,
        "low_threshold": 1 if board.buttons == 3 else 2,
        "response_interval_s": 5,
        "follow_up_timeout_s": 20,
        "code_display_s": 60,
        "confirm_timeout_s": 60,
        "telemetry_interval_s": 60,
        "station": device,
        "staff": [],
    }


# -- the broker's files ----------------------------------------------------------------------


@dataclass
class Register:
    """The fleet's kiosks, kept beside the broker's files: store, device, letter, board."""

    path: Path
    kiosks: list[dict[str, Any]]

    @classmethod
    def load(cls, path: Path) -> Register:
        if not path.exists():
            return cls(path, [])
        try:
            kiosks = json.loads(path.read_text())["kiosks"]
        except (ValueError, KeyError, TypeError):
            raise ProvisionError(
                f"{path} is not a kiosk register; restore it from a backup or remove it"
            ) from None
        return cls(path, list(kiosks))

    def find(self, store: str, device: str) -> dict[str, Any] | None:
        for k in self.kiosks:
            if k["store"] == store and k["device"] == device:
                return k
        return None

    def letters(self, store: str) -> dict[str, str]:
        return {k["letter"]: k["device"] for k in self.kiosks if k["store"] == store}

    def save(self) -> None:
        write_file(self.path, json.dumps({"v": 1, "kiosks": self.kiosks}, indent=2) + "\n")


def password_users(passwd: Path) -> set[str]:
    """The user names in a mosquitto password file."""
    if not passwd.exists():
        return set()
    return {line.split(":", 1)[0] for line in passwd.read_text().splitlines() if ":" in line}


def _mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which(
        "mosquitto_passwd", path="/usr/bin:/usr/sbin"
    )
    if found is None:
        raise ProvisionError(
            "mosquitto_passwd is not installed: apt-get install mosquitto (it comes with it)"
        )
    return found


def add_password(passwd: Path, user: str, password: str) -> None:
    """Add or replace `user` in the password file. The password goes to mosquitto_passwd on
    its standard input, so that it never shows in a process list."""
    if not passwd.exists():
        passwd.touch(mode=0o600)
    result = subprocess.run(
        [_mosquitto_passwd(), str(passwd), user],
        input=f"{password}\n{password}\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        why = (result.stderr or result.stdout).strip().splitlines()
        raise ProvisionError(
            f"mosquitto_passwd could not add {user} to {passwd}: {why[-1] if why else '?'}"
        )


def remove_password(passwd: Path, user: str) -> None:
    subprocess.run(
        [_mosquitto_passwd(), "-D", str(passwd), user],
        capture_output=True,
        timeout=30,
        check=False,
    )


def acl_head() -> str:
    """The rules every provisioned broker starts with: the shipped ACL up to its examples."""
    text = SHIPPED_ACL.read_text()
    head = text.split(_ACL_KIOSKS, 1)[0].rstrip()
    return (
        head + "\n\n# Per kiosk, added by `kiosk-host provision`: its store's open cases (a "
        "pattern cannot\n# name the store alone, as %u is the store and the device together).\n"
    )


def current_acl(text: str) -> str:
    """`text` (an ACL file provisioning wrote) with the shipped rules it lacks, for every
    kiosk and for the fleet tools: a broker folder made by an earlier release gets the
    topics added since (a kiosk's firmware updates, `ota`). Nothing is removed."""
    shipped = SHIPPED_ACL.read_text()
    lines = text.splitlines()
    wanted = [line for line in shipped.splitlines() if line.startswith("pattern ")]
    at = max((i for i, line in enumerate(lines) if line.startswith("pattern ")), default=None)
    if at is not None:
        lines[at + 1 : at + 1] = [line for line in wanted if line not in lines]
    if f"user {FLEET}" in lines:
        start = lines.index(f"user {FLEET}") + 1
        end = start
        while end < len(lines) and lines[end].startswith("topic "):
            end += 1
        block = shipped.split(f"\nuser {FLEET}\n", 1)[1].split("\n\n", 1)[0].splitlines()
        lines[end:end] = [line for line in block if line not in lines[start:end]]
    return "\n".join(lines) + ("\n" if text.endswith("\n") or not text else "")


def acl_block(store: str, device: str, letter: str) -> str:
    return (
        f"\n# {store}/{device}, letter {letter}\n"
        f"user {store}/{device}\ntopic read {topics.topic('cases', store=store)}\n"
    )


def acl_users(acl: Path) -> set[str]:
    if not acl.exists():
        return set()
    return {
        line.split(None, 1)[1].strip()
        for line in acl.read_text().splitlines()
        if line.startswith("user ") and len(line.split(None, 1)) == 2
    }


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace `path` whole (a crash leaves the old file or the new one), with `mode`."""
    tmp = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(broker_dir: Path) -> Iterator[None]:
    """One provisioning at a time on the same broker files."""
    broker_dir.mkdir(parents=True, exist_ok=True)
    with (broker_dir / ".provision.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def aggregator_account(name: str | None = None) -> str:
    """The account of an aggregator: `kiosk-host`, or `kiosk-host-<name>` for another one. It
    is the aggregator's client id and the `host` of its status, so it is an identifier."""
    if name is None:
        return AGGREGATOR
    check_identifier("--name", name)
    return check_identifier("--name (with kiosk-host- before it)", f"{AGGREGATOR}-{name}")


def is_aggregator_account(user: str) -> bool:
    """Whether `user` names an aggregator's account: a tool logged in with it would be given
    the aggregator's client id, and take over (and, on a clean session, wipe) its session."""
    return user == AGGREGATOR or user.startswith(AGGREGATOR + "-")


def credentials_file(broker_dir: Path, user: str) -> Path:
    """Where provisioning keeps the password of a host account (not a kiosk's)."""
    if user == AGGREGATOR:
        return broker_dir / "aggregator.json"
    if user == FLEET:
        return broker_dir / "fleet.json"
    return broker_dir / f"aggregator-{user.removeprefix(AGGREGATOR + '-')}.json"


def _host_acl(user: str) -> str:
    """The ACL lines of a host account missing from the ACL file: another aggregator, or the
    fleet's in a file written before the shipped ACL named it (the shipped lines, copied)."""
    if user == FLEET:
        shipped = SHIPPED_ACL.read_text().split(f"\nuser {FLEET}\n", 1)[1].split("\n\n", 1)[0]
        return f"\n# the fleet tools, added by `kiosk-host provision`\nuser {FLEET}\n{shipped}\n"
    return (
        "\n# another aggregator, added by `kiosk-host provision --aggregator`\n"
        f"user {user}\ntopic readwrite kiosk/#\ntopic read $SYS/#\n"
    )


def _ensure_account(broker_dir: Path, user: str) -> Aggregator:
    """A host account (an aggregator's, the fleet's): made, with its credentials file and its
    ACL lines, if missing."""
    credentials = credentials_file(broker_dir, user)
    passwd = broker_dir / "passwd"
    acl = broker_dir / "acl"
    if user in password_users(passwd):
        if acl.exists() and current_acl(acl.read_text()) != acl.read_text():
            write_file(acl, current_acl(acl.read_text()))
        return Aggregator(user, credentials, False)
    password = _new_password()
    add_password(passwd, user, password)
    write_file(credentials, json.dumps({"user": user, "password": password}) + "\n", 0o600)
    text = acl.read_text() if acl.exists() else acl_head()
    if user not in acl_users(acl) and f"\nuser {user}\n" not in text:
        text += _host_acl(user)
    if not acl.exists() or text != acl.read_text():
        write_file(acl, text)
    return Aggregator(user, credentials, True)


def _ensure_aggregator(broker_dir: Path, name: str | None = None) -> Aggregator:
    return _ensure_account(broker_dir, aggregator_account(name))


def ensure_aggregator(broker_dir: Path = DEFAULT_BROKER_DIR, name: str | None = None) -> Aggregator:
    """An aggregator's account (`kiosk-host`, or `kiosk-host-<name>`): made, with its
    credentials file, if missing."""
    account = aggregator_account(name)
    with _locked(broker_dir):
        return _ensure_account(broker_dir, account)


def ensure_fleet(broker_dir: Path = DEFAULT_BROKER_DIR) -> Aggregator:
    """The fleet tools' account (`kiosk-fleet`): made, with its credentials file, if missing."""
    with _locked(broker_dir):
        return _ensure_account(broker_dir, FLEET)


def aggregator_line(a: Aggregator) -> str:
    made = "made" if a.created else "already there"
    if a.user == FLEET:
        return (
            f"fleet account {a.user} {made}: its password is in {a.credentials}; give config "
            f"push, identify, reboot and deploy --broker mqtt://{a.user}@HOST:PORT"
        )
    return (
        f"aggregator account {a.user} {made}: its password is in {a.credentials}; serve with "
        f"--broker mqtt://{a.user}@HOST:PORT (its client id is {a.user})"
    )


def aggregator_password(broker_dir: Path = DEFAULT_BROKER_DIR) -> str:
    """The aggregator's password, from the credentials file provisioning wrote."""
    try:
        password: str = json.loads((broker_dir / "aggregator.json").read_text())["password"]
    except (OSError, ValueError, KeyError) as why:
        raise ProvisionError(
            f"no aggregator credentials in {broker_dir}/aggregator.json ({why}): run "
            f"`kiosk-host provision --aggregator --broker-dir {broker_dir}`"
        ) from None
    return password


# -- provisioning ----------------------------------------------------------------------------


def provision(req: Request) -> Provisioned:
    """Provision one kiosk: its files in `req.out`, its account in the broker's files."""
    store = check_identifier("--store", req.store)
    device = check_identifier("--device", req.device)
    board = find_board(req.board)
    broker = parse_broker(req.broker)
    check_wifi(req.ssid, req.wifi_pass)
    check_ca(req.ca, broker)
    out = req.out or DEFAULT_DEVICES_DIR / store / device
    user = f"{store}/{device}"
    if (out / "identity.json").exists():
        raise ProvisionError(
            f"{out} already holds a provisioned kiosk (identity.json): give another --out, "
            f"or remove that folder if the kiosk it was for is gone"
        )
    with _locked(req.broker_dir):
        passwd, acl = req.broker_dir / "passwd", req.broker_dir / "acl"
        register = Register.load(req.broker_dir / "kiosks.json")
        if register.find(store, device) or user in password_users(passwd) or user in acl_users(acl):
            raise ProvisionError(
                f"kiosk {device} is already provisioned in store {store} (in {req.broker_dir}): "
                f"give the new kiosk another --device, or `kiosk-host provision --remove` the "
                f"old one first"
            )
        letter = pick_letter(store, req.letter, register.letters(store))
        config = default_config(board, device)
        checked = Contract.load().validate(
            topics.topic("config", store=store, device=device), json.dumps(config).encode()
        )
        if isinstance(checked, Rejection):  # the defaults are the product's: never expected
            raise ProvisionError(f"the default config does not fit the contract: {checked}")
        aggregator = _ensure_aggregator(req.broker_dir)
        fleet = _ensure_account(req.broker_dir, FLEET)
        password = _new_password()
        identity: dict[str, Any] = {
            "store": store,
            "device": device,
            "letter": letter,
            "host": broker.host,
            "port": broker.port,
            "ssid": req.ssid,
            "key": req.wifi_pass,
            "user": user,
            "password": password,
            "fw": __version__,
            # Signs the firmware updates sent to this kiosk alone; kept here and on the kiosk,
            # never in the broker folder (an account there must not be able to forge one).
            "ota_key": secrets.token_hex(OTA_KEY_BYTES),
        }
        if req.ca is not None:
            identity["ca"] = CA_FILE
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        acl_before = acl.read_text() if acl.exists() else None
        try:
            if req.ca is not None:
                write_file(out / CA_FILE, req.ca.read_text())
                written.append(out / CA_FILE)
            write_file(out / "config.json", json.dumps(config, indent=2) + "\n")
            written.append(out / "config.json")
            board_file = {"board": board.file, "name": board.name, "buttons": board.buttons}
            write_file(out / "board.json", json.dumps(board_file, indent=2) + "\n")
            written.append(out / "board.json")
            write_file(out / "identity.json", json.dumps(identity, indent=2) + "\n", 0o600)
            written.append(out / "identity.json")
            add_password(passwd, user, password)
            rules = current_acl(acl_before or acl_head())  # a folder of an earlier release too
            write_file(acl, rules + acl_block(store, device, letter))
            register.kiosks.append(
                {"store": store, "device": device, "letter": letter, "board": board.file,
                 "provisioned": int(time.time())}
            )  # fmt: skip
            register.save()
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            remove_password(passwd, user)
            if acl_before is not None:
                write_file(acl, acl_before)
            raise
    return Provisioned(
        store, device, letter, board, user, broker, out,
        sorted(p.name for p in written), req.broker_dir, aggregator, config, fleet,
    )  # fmt: skip


def remove(store: str, device: str, broker_dir: Path = DEFAULT_BROKER_DIR) -> None:
    """Take a kiosk out of the broker's files: its account, its ACL lines and its letter."""
    check_identifier("--store", store)
    check_identifier("--device", device)
    user = f"{store}/{device}"
    with _locked(broker_dir):
        register = Register.load(broker_dir / "kiosks.json")
        passwd, acl = broker_dir / "passwd", broker_dir / "acl"
        found = register.find(store, device)
        if found is None and user not in password_users(passwd):
            raise ProvisionError(
                f"no kiosk {device} in store {store} in {broker_dir}: check --store, --device "
                f"and --broker-dir (`kiosk-host devices` lists the fleet)"
            )
        remove_password(passwd, user)
        if acl.exists():
            write_file(acl, _without_user(acl.read_text(), user))
        if found is not None:
            register.kiosks.remove(found)
            register.save()


def _without_user(acl: str, user: str) -> str:
    """The ACL text without `user`'s block (its comment line, user line and topic lines)."""
    lines = acl.splitlines(keepends=True)
    out: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith("user "):
            skipping = line.split(None, 1)[1].strip() == user
            if skipping and out and out[-1].startswith(f"# {user},"):
                out.pop()
                if out and out[-1].strip() == "":
                    out.pop()
        elif skipping and not line.startswith("topic "):
            skipping = False
        if not skipping:
            out.append(line)
    return "".join(out)
