"""`kiosk-host demo`: two stores of virtual kiosks, scripted customers and staff, live."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from kiosk_host import __version__
from kiosk_host.demo.broker import Mosquitto
from kiosk_host.demo.mail import MailSink
from kiosk_host.demo.processes import (
    CLIENT_ID,
    KIOSK_HOST,
    Child,
    Kiosk,
    KioskProcess,
    Watcher,
    identity_folder,
)
from kiosk_host.errors import UserError
from kiosk_host.fleet.ota import version as release_version
from kiosk_host.fleet.provision import find_board
from kiosk_host.rules.stores import parse_stores
from kiosk_host.shipped import FIRMWARE
from kiosk_host.sim.virtual_kiosk import default_config
from kiosk_host.storage.sqlite import Storage
from kiosk_host.wire import topics

STORES_FILE = Path(__file__).with_name("stores.toml")
MQTT_PORT = 1883
HTTP_PORT = 8080
SMTP_PORT = 2525  # the demo's mail server, where the managers' e-mails go

# --- the stores, their kiosks and their customers -------------------------------------------

N, S = "store-north", "store-south"
# A letter need only be unique in its store; unique in the demo, no two codes look alike.
KIOSKS = (
    Kiosk(N, "till-1", "A", "esp32_devkitc_ssd1306"),
    Kiosk(N, "till-2", "B", "esp32_devkitc_ssd1306"),
    Kiosk(N, "help-desk", "C", "esp32_devkitc_ssd1306"),
    Kiosk(S, "till-1", "D", "esp32_devkitc_ssd1306"),
    Kiosk(S, "till-2", "E", "esp32_devkitc_ssd1306"),
    Kiosk(S, "help-desk", "F", "esp32_devkitc_ssd1306"),
)
SCALE = 4  # buttons on every kiosk of the demo, 1 (very unhappy) to 4 (very happy)
NO, YES = 1, 4  # the answers to "Let us make it right?"
Verdict = Literal["wow", "fixed", "not_fixed"]
VERDICT_BUTTONS: dict[str, int] = {"wow": 4, "fixed": 3, "not_fixed": 1}
VERDICT_WORDS = {"wow": "Wow!", "fixed": "Fixed", "not_fixed": "Not yet"}


@dataclass(frozen=True)
class Rate:
    """A customer taps a smiley; after a low score the kiosk asks "Let us make it right?"."""

    at: float  # seconds from the start, at speed 1
    store: str
    device: str
    score: int
    case: str | None = None  # yes: the script's name for the case the code opens; None: no


@dataclass(frozen=True)
class Fix:
    """A staff member fixed the problem: `kiosk-host cases fix`."""

    at: float
    store: str
    case: str
    staff: str
    note: str


@dataclass(frozen=True)
class Confirm:
    """The customer comes back: `kiosk-host cases confirm-on` shows the verdict screen on a
    kiosk, and the customer taps their verdict."""

    at: float
    store: str
    case: str
    device: str
    verdict: Verdict


@dataclass(frozen=True)
class Update:
    """A new firmware release for every kiosk of a store, over the air (`kiosk-host ota push
    --canary 1`), while its customers keep tapping."""

    at: float
    store: str


Step = Rate | Fix | Confirm | Update

# With the demo's 3-minute window: every case but "lost-parcel" gets its verdict in time;
# "lost-parcel" gets its deadline warning at 2:35 and breaches at 3:35.
STORY: tuple[Step, ...] = (
    Rate(20, N, "till-2", 1, case="cold-coffee"),
    Rate(35, N, "help-desk", 2, case="lost-parcel"),  # nobody takes it on: it breaches
    Rate(45, S, "till-1", 2, case="wrong-size"),
    Rate(50, N, "till-1", 2, case="long-queue"),
    Rate(55, S, "help-desk", 1, case="no-call-back"),
    Rate(62, S, "till-2", 2),  # a breakdown whose customer says no: no case
    Fix(65, N, "cold-coffee", "ben", "fresh coffee, and a cake on the house"),
    Fix(75, S, "wrong-size", "dora", "exchanged the shirt"),
    Confirm(85, N, "cold-coffee", "till-2", "wow"),
    Confirm(95, S, "wrong-size", "till-1", "not_fixed"),  # "Not yet": open again, escalated
    Fix(100, N, "long-queue", "ana", "opened a second till, free delivery"),
    Fix(110, S, "no-call-back", "fatima", "called back, delivery booked for today"),
    Confirm(120, N, "long-queue", "till-1", "fixed"),
    Fix(125, S, "wrong-size", "dora", "found the right size, gift-wrapped it"),
    Confirm(135, S, "no-call-back", "help-desk", "wow"),
    Confirm(150, S, "wrong-size", "till-1", "wow"),
    Update(30, S),
)
QUIET_S = 10.0  # no everyday customer at a kiosk this close to a story step there
# The demo's kiosks send telemetry every 10 s (the product's default is 60 s), so that a kiosk
# switched off near the end is named down on the overview within 20 s.
TELEMETRY_S = 10
SWITCHED_OFF = (S, "help-desk")  # the kiosk switched off once the customers are done
# The release the demo sends: its firmware with one visible change, the thank-you screen.
FACTORY_THANKS = 'THANK_YOU = "Thank you!"'
NEW_THANKS = "Thank you! See you soon."
DEMO_WIFI = ("demo-shop", "demo-shop-key")  # the simulated Wi-Fi its kiosks are set up for
# `ota push` prints a line per kiosk when it passes another tenth or changes state.
PROGRESS = re.compile(r"(\S+)/(\S+) \[[#.]*\]\s*\d+% (\d+)/(\d+) (\w+)(?:: (.*))?")
# Once "lost-parcel" has breached, staff still put it right: a late fix, never counted in time.
LATE_FIX = Fix(0, N, "lost-parcel", "ben", "found the parcel and took it to the customer's home")


def customers(minutes: float, seed: int = 7) -> list[Rate]:
    """Everyday customers at every kiosk for `minutes`, one every 9 to 20 s: most are happy;
    the few who are not say no to "Let us make it right?"."""
    rng = random.Random(seed)
    out = []
    for k in KIOSKS:
        t = rng.uniform(2.0, 10.0)
        while t < minutes * 60:
            score = rng.choices((4, 3, 2, 1), weights=(65, 27, 6, 2))[0]
            out.append(Rate(round(t, 1), k.store, k.device, score))
            t += rng.uniform(9.0, 20.0)
    return out


def script(minutes: float, seed: int = 7) -> list[Step]:
    """The story and the everyday customers in time order (the story first on a tie). No
    everyday customer comes within QUIET_S of a story step at the same kiosk, so that nobody
    taps into another customer's code or verdict screen."""
    busy = [(s.store, s.device, s.at) for s in STORY if isinstance(s, Rate | Confirm)]
    crowd = [
        c
        for c in customers(minutes, seed)
        if not any(
            (c.store, c.device) == (store, device) and abs(c.at - at) < QUIET_S
            for store, device, at in busy
        )
    ]
    return sorted([*STORY, *crowd], key=lambda s: s.at)


def scaled_stores(text: str, speed: float) -> str:
    """The demo's stores.toml with every `window_minutes` and `near_minutes` `speed` times
    shorter, in whole minutes: a window of at least a minute, a warning shorter than it."""
    out = []
    window: int | None = None
    for line in text.splitlines():
        if line.lstrip().startswith("[") and not line.lstrip().startswith("[["):
            window = None
        m = re.fullmatch(r"(\s*)(window|near)(_minutes\s*=\s*)(\d+)(.*)", line)
        if m:
            value = round(int(m.group(4)) / speed)
            if m.group(2) == "window":
                window = value = max(1, value)
            elif window is not None:
                value = min(window - 1, value)
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}{value}{m.group(5)}"
        out.append(line)
    scaled = "\n".join(out) + "\n"
    parse_stores(scaled, f"{STORES_FILE.name} at speed {speed}")  # says what no longer fits
    return scaled


def plural(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def code_on_screen(text: str, letter: str) -> str | None:
    """The recovery code on a kiosk's code screen (its letter, three characters and the check
    character)."""
    m = re.search(rf"\b{letter}[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{{4}}\b", text)
    return m.group(0) if m else None


# --- ports -----------------------------------------------------------------------------------


class DemoError(UserError):
    """The demo cannot start or go on; the message says why and where to look."""


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(wanted: int | None, default: int, setting: str) -> int:
    """`wanted` when given (it must be free), else `default` when free, else any free port."""
    if wanted is not None:
        if not port_free(wanted):
            raise DemoError(f"port {wanted} ({setting}) is in use: choose another")
        return wanted
    if port_free(default):
        return default
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- the demo --------------------------------------------------------------------------------


class Stopped(Exception):
    """Ctrl-C (or SIGTERM) while the demo was starting."""


class Demo:
    """Starts the broker, the aggregator and the kiosks, plays the script, stops them all."""

    def __init__(self, args: argparse.Namespace) -> None:
        if not args.speed > 0:
            raise DemoError(f"--speed must be above 0, got {args.speed}")
        if not args.minutes >= 0:
            raise DemoError(f"--minutes must be 0 or more, got {args.minutes}")
        self.args = args
        self.speed: float = args.speed
        self.minutes: float = args.minutes
        self.var = Path(args.var).resolve()
        self.db = self.var / "demo.db"
        self.stores = self.var / "stores.toml"
        self.logs = self.var / "logs"
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.url = ""
        self.watcher: Watcher | None = None
        self.aggregator: Child | None = None
        self.kiosks: dict[tuple[str, str], KioskProcess] = {}
        self.codes: dict[tuple[str, str], str] = {}  # (store, the script's case name) -> code
        self.crowd: list[str] = []  # everyday ratings not printed yet
        self.frozen: set[tuple[str, str]] = set()  # kiosks switched off (their process stopped)
        self._out = threading.Lock()
        self._next_figures = 0.0
        self._next_crowd = 0.0
        self.pushing: subprocess.Popen[str] | None = None  # `kiosk-host ota push`, while it runs
        self.http_port = pick_port(args.http_port, HTTP_PORT, "DEMO_HTTP_PORT")
        self.mqtt_port = (
            0 if args.broker else pick_port(args.mqtt_port, MQTT_PORT, "DEMO_MQTT_PORT")
        )
        self.mail = MailSink(
            pick_port(args.smtp_port, SMTP_PORT, "DEMO_SMTP_PORT"), self.var / "mail", self.on_mail
        )
        # the demo's own mosquitto, unless --broker names one (it says now if it is missing)
        self.broker = (
            None
            if args.broker
            else Mosquitto(self.mqtt_port, self.var / "broker", self.logs / "broker.log")
        )

    # -- saying what happens ---------------------------------------------------------------

    def say(self, text: str) -> None:
        s = int(time.monotonic() - self.t0)
        with self._out:
            print(f"{s // 60:02d}:{s % 60:02d}  {text}", flush=True)

    def on_alert(self, alert: dict[str, Any]) -> None:
        mark = {"critical": "!!", "warning": "! "}.get(str(alert.get("severity")), "  ")
        self.say(f"{mark}ALERT {alert.get('store')} {alert.get('type')}: {alert.get('text')}")

    def on_mail(self, message: EmailMessage, path: Path) -> None:
        subject = " ".join(str(message["Subject"]).split())
        self.say(f"   MAIL to {message['To']}: {subject} ({self.shown(path)})")

    def shown(self, path: Path) -> str:
        """A path as the person running the demo would type it."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    def command(self, args: Sequence[str]) -> str:
        exe = Path(sys.executable).with_name("kiosk-host")
        return shlex.join([self.shown(exe) if exe.exists() else "kiosk-host", *args])

    # -- starting --------------------------------------------------------------------------

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Until `check()`; DemoError after `timeout` s, Stopped on Ctrl-C."""
        deadline = time.monotonic() + timeout
        while not check():
            if self.stop.is_set():
                raise Stopped
            if self.broker is not None and not self.broker.running():
                raise DemoError(
                    f"mosquitto stopped while waiting for {what}; the end of "
                    f"{self.shown(self.broker.log)}:\n{self.broker.child.log_tail()}"
                )
            for child in [self.aggregator, *self.kiosks.values()]:
                if child is not None and not child.running():
                    raise DemoError(
                        f"{child.name} stopped while waiting for {what}; the end of "
                        f"{self.shown(child.log)}:\n{child.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise DemoError(f"no {what} after {timeout:.0f} s; the logs are in {self.logs}")
            self.stop.wait(0.1)

    def start(self) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        resumed = self.db.exists()
        self.stores.write_text(scaled_stores(STORES_FILE.read_text(), self.speed))
        window = parse_stores(self.stores.read_text()).get(N).window_text
        self.say(
            f"Kiosk feedback demo: 2 stores, 6 virtual kiosks, a {window} recovery window; "
            + ("carrying on with the data in " if resumed else "data in ")
            + f"{self.shown(self.var)}/"
        )
        if self.broker is None:
            self.url = self.args.broker
            self.say(f"Broker: {self.url} (MQTT_URL)")
        else:
            self.broker.start()
            self.url = self.broker.url
            self.say(
                f"Broker: {self.url} (a private mosquitto: its data in "
                f"{self.shown(self.broker.directory)}/, its log {self.shown(self.broker.log)})"
            )
        http_port = self.http_port
        try:
            self.watcher = Watcher(self.url, self.on_alert)
        except OSError as why:
            raise DemoError(f"no broker at {self.url}: {why}") from None
        watcher = self.watcher
        self.wait(watcher.subscribed.is_set, 30, "subscriptions confirmed by the broker")
        self.mail.start()
        self.aggregator = Child(
            "aggregator",
            [*KIOSK_HOST, "serve", "--broker", self.url, "--db", str(self.db),
             "--stores", str(self.stores), "--client-id", CLIENT_ID,
             "--http", f"127.0.0.1:{http_port}", "--token-file", str(self.token_file()),
             "--smtp", self.mail.url, "--mail-from", "Kiosk alerts <alerts@demo.example>",
             "--dashboard-url", f"http://127.0.0.1:{http_port}/"],
            self.logs / "aggregator.log",
        )  # fmt: skip
        self.aggregator.start()
        self.wait(lambda: watcher.host_online, 60, "aggregator online")
        self.say(
            f"Aggregator: {self.command(['serve', '--db', self.shown(self.db)])} ... "
            f"(log in {self.shown(self.aggregator.log)})"
        )
        self.identities()
        for k in KIOSKS:
            kiosk = KioskProcess(k, self.var, self.stop)
            kiosk.start()
            self.kiosks[(k.store, k.device)] = kiosk
        for kiosk in self.kiosks.values():
            self.wait(kiosk.showing("idle"), 90, f"{kiosk.name} ready")
        self.wait(lambda: watcher.online(KIOSKS) == len(KIOSKS), 60, "kiosks online")
        self.say(f"Kiosks: {', '.join(k.name for k in self.kiosks.values())} online")
        for k in KIOSKS:  # as `kiosk-host config push --set telemetry_interval_s=10` would
            config = {**default_config(k.device, SCALE), "telemetry_interval_s": TELEMETRY_S}
            topic = topics.topic("config", store=k.store, device=k.device)
            watcher.client.publish(topic, json.dumps(config), qos=1, retain=True)
        self.wait(lambda: not port_free(http_port), 60, "dashboard")
        self.say(
            f"Mail: the managers' e-mails go to a mail server of the demo's own, which keeps "
            f"each in {self.shown(self.mail.folder)}/ (open one in any mail program; "
            f"{self.command(['alerts', 'deliveries', '--store', N])} lists what was sent)"
        )
        self.say(
            f"Dashboard: http://127.0.0.1:{http_port}/ (the managers' token for changes is in "
            f"{self.shown(self.token_file())}); Ctrl-C stops the demo"
        )

    def identities(self) -> None:
        """Each kiosk's folder as `kiosk-host provision` writes it (identity.json, board.json,
        config.json), for the demo's broker: the kiosk runs as it (`virtual-kiosk --identity`),
        and `ota push` signs its updates with its `ota_key`, made on the first run and kept.
        The demo's broker takes anyone, so the kiosks get no accounts of their own."""
        url = urlparse(self.url)
        for k in KIOSKS:
            folder = identity_folder(self.var, k)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                key = str(json.loads((folder / "identity.json").read_text())["ota_key"])
            except (OSError, ValueError, KeyError, TypeError):
                key = secrets.token_hex(32)
            identity = {
                "store": k.store, "device": k.device, "letter": k.letter,
                "host": url.hostname or "127.0.0.1", "port": url.port or 1883,
                "ssid": DEMO_WIFI[0], "key": DEMO_WIFI[1],
                "user": unquote(url.username) if url.username else None,
                "password": unquote(url.password) if url.password else None,
                "fw": __version__, "ota_key": key,
            }  # fmt: skip
            write_private(folder / "identity.json", json.dumps(identity, indent=2) + "\n")
            board = find_board(k.board)
            (folder / "board.json").write_text(
                json.dumps({"board": board.file, "name": board.name, "buttons": board.buttons})
            )
            config = {**default_config(k.device, SCALE), "telemetry_interval_s": TELEMETRY_S}
            (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def wait_stored_offline(self, kiosks: Sequence[Kiosk], timeout: float) -> bool:
        """Until the aggregator's database has `kiosks` offline; False after `timeout` s."""
        if not kiosks or not self.db.exists():
            return True
        wanted = {(k.store, k.device) for k in kiosks}
        deadline = time.monotonic() + timeout
        try:
            storage = Storage(self.db)
        except (sqlite3.Error, OSError):
            return False
        try:
            while True:
                offline = {
                    (d["store"], d["device"]) for d in storage.devices() if d["state"] == "offline"
                }
                if wanted <= offline:
                    return True
                if time.monotonic() > deadline or not (
                    self.aggregator and self.aggregator.running()
                ):
                    return False
                time.sleep(0.02)
        except sqlite3.Error:
            return False
        finally:
            storage.close()

    def token_file(self) -> Path:
        """The dashboard's token for changes, made on the first run and kept."""
        path = self.var / "dashboard-token"
        if not path.exists():
            path.touch(0o600)
            path.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
        return path

    # -- playing ---------------------------------------------------------------------------

    def play(self, steps: Sequence[Step]) -> None:
        start = time.monotonic()
        for step in steps:
            due = start + step.at / self.speed
            while time.monotonic() < due:
                self.idle(min(0.25, due - time.monotonic()))
            if isinstance(step, Rate):
                self.rate(step)
            elif isinstance(step, Fix):
                self.fix(step)
            elif isinstance(step, Update):
                self.update(step)
            else:
                self.confirm(step)
        self.flush_crowd()
        self.late_fix(LATE_FIX)
        self.switch_off(*SWITCHED_OFF)
        self.look()
        self.say("The customers are done; all keeps running until Ctrl-C.")

    def late_fix(self, step: Fix) -> None:
        """Wait for the case to breach (its deadline warning and breach alerts are printed as
        they come), then record the staff's fix: late, so the case stays overdue and listed."""
        code = self.codes.get((step.store, step.case))
        if code is None:
            return
        deadline = time.monotonic() + 600 / self.speed
        while self.case_state(step.store, code) != "breached":
            if time.monotonic() > deadline:
                self.say(f"   {code} ({step.case}) has not breached: see the logs")
                return
            self.idle(1.0)
        self.fix(step)
        state = self.case_state(step.store, code)
        self.say(f"   {code} is {state}, fixed late: overdue, listed until a manager closes it")

    def case_state(self, store: str, code: str) -> str | None:
        """The state of a case as `cases list --json` gives it (None if it cannot be read)."""
        ok, out = self.cli(["cases", "list", "--store", store])
        if not ok:
            return None
        try:
            found = [c["state"] for c in json.loads(out) if c["code"] == code]
        except (ValueError, KeyError, TypeError):
            return None
        return found[0] if found else None

    def switch_off(self, store: str, device: str) -> None:
        """Switch a kiosk off as the power goes: it stops at once, with no goodbye to the
        broker (its process is stopped, its connection left hanging, as a dead Wi-Fi link
        leaves it); say when the overview names it down (GET /api/stores)."""
        kiosk = self.kiosks[(store, device)]
        if kiosk.pid is None or not kiosk.running():
            return
        os.kill(kiosk.pid, signal.SIGSTOP)
        self.frozen.add((store, device))
        off = time.monotonic()
        self.say(f"{store}/{device} is switched off (its telemetry, every {TELEMETRY_S} s, stops)")
        deadline = off + 3 * TELEMETRY_S + 60  # the broker's keepalive names it down by then
        while device not in self.kiosks_down(store):
            if time.monotonic() > deadline:
                self.say(f"   the overview still shows {store}/{device} up: see the logs")
                return
            self.idle(0.5)
        self.say(
            f"The overview names {store}/{device} down, {time.monotonic() - off:.0f} s after it "
            f"was switched off: http://127.0.0.1:{self.http_port}/"
        )

    def kiosks_down(self, store: str) -> list[str]:
        """The store's kiosks the overview names down (offline or refused)."""
        url = f"http://127.0.0.1:{self.http_port}/api/stores"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                rows = json.loads(answer.read())["stores"]
        except (OSError, ValueError, KeyError):
            return []
        return next((list(r.get("kiosks_down", [])) for r in rows if r["store"] == store), [])

    def look(self) -> None:
        """The commands that show what the dashboard shows, to copy as printed: they read
        the store settings `serve` kept in the database, as the dashboard does."""
        self.say("What the dashboard shows, on the command line:")
        db = self.shown(self.db)
        for args in (
            ["cases", "list", "--store", N],
            ["report", "--store", N, "--period", "day"],
            ["recognition", "--store", S, "--period", "week"],
            ["alerts", "list", "--store", S],
        ):
            self.say(f"   $ {self.command([*args, '--db', db])}")

    def idle(self, seconds: float) -> None:
        """Wait, looking after the processes and printing the stores' figures each minute."""
        if self.stop.wait(max(0.0, seconds)):
            raise Stopped
        if self.broker is not None and not self.broker.running():
            raise DemoError(
                f"mosquitto stopped; the end of {self.shown(self.broker.log)}:\n"
                + self.broker.child.log_tail()
            )
        if self.aggregator is not None and not self.aggregator.running():
            raise DemoError(
                f"the aggregator stopped; the end of {self.shown(self.aggregator.log)}:\n"
                + self.aggregator.log_tail()
            )
        for kiosk in self.kiosks.values():
            if not kiosk.running():
                code = kiosk.proc.returncode if kiosk.proc is not None else None
                self.say(f"{kiosk.name} stopped (exit {code}); switching it on again")
                kiosk.start()
        now = time.monotonic()
        if now >= self._next_crowd or len(self.crowd) >= 6:
            self._next_crowd = now + 15
            self.flush_crowd()
        if now >= self._next_figures:
            self._next_figures = now + 60
            self.figures()

    def figures(self) -> None:
        if self.watcher is None:
            return
        for store in (N, S):
            f = self.watcher.summary(store)
            if not f or not f.get("ratings"):
                continue
            share = f"{f['satisfaction']:.0%}" if f.get("satisfaction") is not None else "-"
            self.say(
                f"   {store} today: {f['ratings']} ratings, {share} satisfied, "
                f"{plural(f['open_cases'], 'open case')} ({f['overdue_cases']} overdue), "
                f"{f['recovered_in_time']} recovered in time"
            )

    def flush_crowd(self) -> None:
        if self.crowd:
            self.say(f"Customers: {'  '.join(self.crowd)}")
            self.crowd = []

    def rate(self, step: Rate) -> None:
        kiosk = self.kiosks[(step.store, step.device)]
        if kiosk.screen()[0] == "code":  # the last customer copied the code down and left:
            self.idle(2.5)  # once its first 2 s are past, a press there is a new rating
        shown = kiosk.press(step.score, {"thanks", "sorry"})
        where = f"{step.store}/{step.device}"
        if shown is None:
            self.say(f"{where}: the kiosk did not take the press ({kiosk.screen()[0]} screen)")
            return
        if shown[0] == "thanks":
            self.crowd.append(f"{where} {step.score}")
            return
        if step.case is None:
            kiosk.press(NO, {"thanks"})
            if step in STORY:
                self.flush_crowd()
                self.say(f"{where}: a customer taps {step.score} of {SCALE} and says no to "
                         "\"Let us make it right?\" (a breakdown, no case)")  # fmt: skip
            else:
                self.crowd.append(f"{where} {step.score} (no)")
            return
        code_screen = kiosk.press(YES, {"code"})
        code = code_on_screen(code_screen[1], kiosk.kiosk.letter) if code_screen else None
        self.flush_crowd()
        if code is None:
            self.say(f"{where}: no recovery code was shown ({kiosk.screen()})")
            return
        self.codes[(step.store, step.case)] = code
        self.say(
            f'{where}: a customer taps {step.score} of {SCALE}, says yes to "Let us make it '
            f'right?" and copies down the code {code} ({step.case})'
        )

    def cli(self, args: Sequence[str]) -> tuple[bool, str]:
        """Run `kiosk-host ARGS --db ...`: whether it worked, and what it printed."""
        full = [*KIOSK_HOST, *args, "--db", str(self.db), "--json"]
        try:
            # in a process group of its own: a Ctrl-C meanwhile is the demo's; this one finishes
            out = subprocess.run(
                full, capture_output=True, text=True, timeout=60, start_new_session=True
            )
        except subprocess.TimeoutExpired:
            return False, "no answer in 60 s"
        return out.returncode == 0, (out.stdout if out.returncode == 0 else out.stderr).strip()

    def fix(self, step: Fix) -> None:
        code = self.codes.get((step.store, step.case))
        self.flush_crowd()
        if code is None:
            self.say(f"{step.store}: no code for {step.case}, nothing to fix")
            return
        args = ["cases", "fix", code, "--store", step.store, "--staff", step.staff,
                "--note", step.note]  # fmt: skip
        ok, out = self.cli(args)  # as printed: the settings are those serve kept in the database
        self.say(f'{step.store}: {step.staff} fixed {code} ({step.case}): "{step.note}"')
        self.say(f"   $ {self.command([*args, '--db', self.shown(self.db)])}")
        if not ok:
            self.say(f"   refused: {out}")

    def confirm(self, step: Confirm) -> None:
        code = self.codes.get((step.store, step.case))
        kiosk = self.kiosks[(step.store, step.device)]
        self.flush_crowd()
        if code is None:
            self.say(f"{step.store}: no code for {step.case}, nothing to confirm")
            return
        args = ["cases", "confirm-on", code, "--store", step.store, "--device", step.device,
                "--broker", self.url]  # fmt: skip
        since = kiosk.shown()
        ok, out = self.cli(args)
        self.say(f"{step.store}: the customer of {code} is back; the verdict screen goes to "
                 f"{step.device}")  # fmt: skip
        self.say(f"   $ {self.command([*args, '--db', self.shown(self.db)])}")
        shown = kiosk.wait_screen({"confirm"}, since, 20) if ok else None
        if shown is None:
            self.say(f"   {step.device} did not show it: {out or kiosk.screen()}")
            return
        kiosk.press(VERDICT_BUTTONS[step.verdict], {"thanks"})
        self.say(f"{step.store}/{step.device}: \"{shown[1].split(' | ')[0]}\" "
                 f"- the customer taps {VERDICT_WORDS[step.verdict]}")  # fmt: skip

    def update(self, step: Update) -> None:
        """Build a release (the firmware with a new thank-you text) and push it to the
        store's kiosks, one canary first, in the background: the customers go on meanwhile,
        and each kiosk's progress is said as `ota push` reports it."""
        folder = self.var / "release"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(FIRMWARE, folder, ignore=shutil.ignore_patterns("__pycache__"))
        texts = folder / "texts_en.py"
        texts.write_text(texts.read_text().replace(FACTORY_THANKS, f'THANK_YOU = "{NEW_THANKS}"'))
        new = release_version(folder)
        self.flush_crowd()
        self.say(
            f"Update: release {new} built in {self.shown(folder)}/ (its thank-you screen says "
            f'"{NEW_THANKS}"); it goes to the {step.store} kiosks over MQTT while customers tap'
        )
        args = ["ota", "push", "--store", step.store, "--all", "--canary", "1",
                "--firmware", str(folder), "--devices-dir", str(self.var / "devices"),
                "--broker", self.url]  # fmt: skip
        shown = [self.shown(folder) if a == str(folder) else a for a in args]
        self.say(f"   $ {self.command(shown)}")
        # in a process group of its own: a Ctrl-C is the demo's, which then stops it
        self.pushing = subprocess.Popen(
            [*KIOSK_HOST, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._follow, args=(self.pushing, new), daemon=True).start()

    def _follow(self, push: subprocess.Popen[str], new: str) -> None:
        """Say each kiosk's steps as `ota push` reports them, then how the push ended."""
        assert push.stdout is not None and push.stderr is not None
        said: dict[str, str] = {}
        steps = {
            "receiving": "receiving the release, chunk by chunk",
            "staged": "every file received and checked; switching when nobody is at it",
            "done": f"restarted on {new}, online, and confirmed it",
        }
        for line in push.stderr:
            m = PROGRESS.fullmatch(line.strip())
            if m is None:
                if line.strip():
                    self.say(f"   ota push: {line.strip()}")
                continue
            kiosk, state, why = f"{m.group(1)}/{m.group(2)}", m.group(5), m.group(6)
            if said.get(kiosk) == state or state == "waiting":
                continue
            step = steps.get(state, state)
            if state == "done" and kiosk not in said:  # a run of the demo before updated it
                step = f"already runs {new}: nothing to send"
            said[kiosk] = state
            self.say(f"Update: {kiosk} {step}{f': {why}' if why else ''}")
        out = push.stdout.read().strip().splitlines()
        code = push.wait()
        if self.stop.is_set():
            return
        for line in out:
            self.say(f"   {line}")
        if code == 0:
            self.say(f"Update: every kiosk of the store runs {new} (ota push exit 0), its "
                     "customers tapping on throughout")  # fmt: skip
        else:
            self.say(f"Update: ota push ended with exit {code}: see above")

    # -- stopping --------------------------------------------------------------------------

    def shutdown(self) -> None:
        """The kiosks (as at closing time: switched off, so the broker publishes their last
        will), then the aggregator (it stores and acknowledges what it has received), then
        the broker (it saves its state). Each is killed if it does not stop in time."""
        self.flush_crowd()
        if self.pushing is not None and self.pushing.poll() is None:
            self.pushing.terminate()  # a rollout under way: the kiosks finish on their own
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.pushing.wait(10)
        last = ", then the broker" if self.broker is not None else ""
        self.say(f"Stopping: the kiosks, the aggregator{last} ...")
        for kiosk in self.kiosks.values():
            if kiosk.running() and kiosk.proc is not None:
                kiosk.proc.send_signal(signal.SIGTERM)
                if (kiosk.kiosk.store, kiosk.kiosk.device) in self.frozen:
                    kiosk.proc.send_signal(signal.SIGCONT)  # switched off: it ends as it wakes
        for kiosk in self.kiosks.values():
            kiosk.stop(signal.SIGTERM, 10)
        watcher = self.watcher
        if watcher is not None and self.aggregator is not None and self.aggregator.running():
            deadline = time.monotonic() + 5
            while watcher.online(KIOSKS) and time.monotonic() < deadline:
                time.sleep(0.02)
            # The aggregator got their last wills when the watcher did; until it has stored
            # them, stopping it would leave them to its next run.
            self.wait_stored_offline(watcher.offline(KIOSKS), 3.0)
        if self.aggregator is not None:
            self.aggregator.stop(signal.SIGINT, 30)
        if watcher is not None:
            watcher.close()
        if self.broker is not None:
            self.broker.stop()
        self.mail.stop()
        self.say(
            f"Stopped. The data stays in {self.shown(self.var)}/; `make demo` carries on from "
            f"it (delete {self.shown(self.var)}/ to start afresh)."
        )


def write_private(path: Path, text: str) -> None:
    """A file only its owner may read (an identity holds the kiosk's keys)."""
    path.touch(0o600)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """`kiosk-host demo`: runs until Ctrl-C or SIGTERM; 2 for arguments it cannot use, 1 when
    something could not start or stopped."""
    try:
        demo = Demo(args)
    except UserError as why:
        print(f"kiosk-host demo: {why}", file=sys.stderr, flush=True)
        return 2
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: demo.stop.set())
    code = 0
    try:
        demo.start()
        demo.play(script(demo.minutes))
        while True:
            demo.idle(0.5)
    except Stopped:
        pass
    except UserError as why:  # the demo's, the broker's, a broker URL's
        print(f"kiosk-host demo: {why}", file=sys.stderr, flush=True)
        code = 1
    finally:
        demo.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
