"""`kiosk-host demo`: two stores of virtual kiosks, scripted customers and staff, live."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import contextvars
import ctypes
import json
import logging
import os
import random
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import amqtt.broker  # type: ignore[import-untyped]
import paho.mqtt.client as paho
from amqtt.mqtt.protocol.broker_handler import (  # type: ignore[import-untyped]
    BrokerProtocolHandler,
)
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin  # type: ignore[import-untyped]
from amqtt.session import OUTGOING  # type: ignore[import-untyped]
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.stores import parse_stores

STORES_FILE = Path(__file__).with_name("demo_stores.toml")
CLIENT_ID = "kiosk-host-demo"  # the aggregator's persistent session on the broker
KIOSK_HOST = (sys.executable, "-m", "kiosk_host.cli")
MQTT_PORT = 1883
HTTP_PORT = 8080

# --- the stores, their kiosks and their customers -------------------------------------------


@dataclass(frozen=True)
class Kiosk:
    store: str
    device: str  # also its station
    letter: str  # the first character of its recovery codes
    board: str  # a file in boards/


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


Step = Rate | Fix | Confirm

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
)
QUIET_S = 10.0  # no everyday customer at a kiosk this close to a story step there


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
    """The recovery code on a kiosk's code screen (its letter and three characters)."""
    m = re.search(rf"\b{letter}[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{{3}}\b", text)
    return m.group(0) if m else None


# --- ports -----------------------------------------------------------------------------------


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
            raise ValueError(f"port {wanted} ({setting}) is in use: choose another")
        return wanted
    if port_free(default):
        return default
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- the embedded broker ---------------------------------------------------------------------


class AdmitEveryone(BaseAuthPlugin):  # type: ignore[misc]
    """Lets every client in without marking it anonymous. amqtt's own anonymous plugin marks
    every client so, and amqtt keeps no session and queues no message for an anonymous
    client, which turns the aggregator's persistent session into a clean one."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


class KeepSessions(BasePlugin):  # type: ignore[misc]
    """Keeps the broker's retained messages and persistent sessions (their subscriptions and
    the messages waiting for them) in a file: saved every `autosave_s` and at shutdown,
    loaded at start. amqtt keeps them only in memory."""

    @dataclass
    class Config:
        path: str = "broker.json"
        autosave_s: float = 30.0

    async def on_broker_pre_start(self) -> None:
        self._saver: asyncio.Task[None] | None = None
        path = Path(self.config.path)
        try:
            await restore_broker(self.context, path)
        except (OSError, ValueError, KeyError, TypeError) as why:
            self.context.logger.warning(f"{path} not loaded ({why}); starting empty")
            with contextlib.suppress(OSError):
                path.replace(path.with_suffix(".unreadable"))

    async def on_broker_post_start(self) -> None:
        self._saver = asyncio.create_task(self._autosave())

    async def on_broker_pre_shutdown(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
        save_broker(self.context, Path(self.config.path))

    async def _autosave(self) -> None:
        while True:
            await asyncio.sleep(self.config.autosave_s)
            save_broker(self.context, Path(self.config.path))


class AckedHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's end of a client connection, except that an outgoing QoS 1 message stays in
    the client's session until its PUBACK, however long that takes. amqtt 0.12 drops it
    after 5 s without one, or when the connection goes, so a subscriber that acknowledges
    only once it has stored a message (the aggregator) would lose what it had received but
    not yet stored when it stopped. Kept, it is sent again (DUP) when the client returns."""

    async def _handle_qos1_message_flow(self, message: Any) -> None:
        if message.direction != OUTGOING:
            await super()._handle_qos1_message_flow(message)
            return
        packet_id = message.packet_id
        self.session.inflight_out[packet_id] = message
        packet = message.build_publish_packet(dup=message.publish_packet is not None)
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._puback_waiters[packet_id] = acked  # before sending: a PUBACK can come at once
        try:
            await self._send_packet(packet)
            message.publish_packet = packet
            message.puback_packet = await acked  # cancelled when the connection goes
        finally:
            self._puback_waiters.pop(packet_id, None)
        self.session.inflight_out.pop(packet_id, None)


_SUBSCRIBING: contextvars.ContextVar[bool] = contextvars.ContextVar("subscribing", default=False)


class KioskBroker(amqtt.broker.Broker):  # type: ignore[misc]
    """amqtt's broker with the ways of amqtt 0.12 that lose or garble the product's messages
    put right:

    * a client gets the retained messages of a topic when it subscribes to it; amqtt also
      sends every connecting client those of every other client's subscriptions, from a
      loop that fails ("dictionary changed size") when a subscription comes or goes then;
    * a message kept for a client while it was away reaches it as it was sent, not flagged
      as a retained one;
    * at shutdown, what was received is passed on (or kept for its subscribers) first:
      amqtt drops the messages it has not passed on yet.
    """

    async def shutdown(self) -> None:
        settled = 0
        for _ in range(50):  # 5 s at most
            await asyncio.sleep(0.1)
            settled = settled + 1 if self._settled() else 0
            if settled == 2:
                break
        await super().shutdown()

    def _settled(self) -> bool:
        """Nothing received is still on its way to its subscribers."""
        return (
            self._broadcast_queue.empty()
            and all(t.done() for t in self._tasks_queue)
            and all(s.delivered_message_queue.empty() for s, _ in self._sessions.values())
        )

    async def _handle_subscription(self, session: Any, handler: Any, waiter: Any) -> None:
        token = _SUBSCRIBING.set(True)
        try:
            await super()._handle_subscription(session, handler, waiter)
        finally:
            _SUBSCRIBING.reset(token)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        if _SUBSCRIBING.get():  # not at connect, for everybody's subscriptions
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _publish_session_retained_messages(self, session: Any) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        while not session.retained_messages.empty():
            m = session.retained_messages.get_nowait()
            sends.append(asyncio.ensure_future(handler.mqtt_publish(m.topic, m.data, m.qos, False)))
        if sends:
            await asyncio.wait(sends)


def _message(m: Any) -> dict[str, Any]:
    return {"topic": m.topic, "data": base64.b64encode(bytes(m.data)).decode(), "qos": m.qos or 0}


def _queued(queue: asyncio.Queue[Any]) -> list[Any]:
    """What a queue holds, left in place."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    for item in items:
        queue.put_nowait(item)
    return items


def save_broker(context: Any, path: Path) -> None:
    """Write the broker's retained messages and persistent sessions to `path` (atomically)."""
    subscriptions: dict[str, list[tuple[str, int]]] = {}
    for topic_filter, entries in context.subscriptions.items():
        for session, qos in entries:
            subscriptions.setdefault(session.client_id, []).append((topic_filter, qos))
    sessions = []
    for session in context.sessions:
        if session.clean_session or session.is_anonymous or not session.client_id:
            continue
        waiting = [*session.inflight_out.values(), *_queued(session.retained_messages)]
        sessions.append(
            {
                "client_id": session.client_id,
                "subscriptions": subscriptions.get(session.client_id, []),
                "waiting": [_message(m) for m in waiting],
            }
        )
    state = {
        "v": 1,
        "retained": [_message(m) for m in context.retained_messages.values()],
        "sessions": sessions,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    new = path.with_suffix(".new")
    with new.open("w", encoding="utf-8") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    new.replace(path)


async def restore_broker(context: Any, path: Path) -> None:
    """Load what `save_broker` wrote: retained messages, and every persistent session with
    its subscriptions and the messages waiting for it (sent when its client connects)."""
    if not path.exists():
        return
    state = json.loads(path.read_text(encoding="utf-8"))
    Retained = amqtt.broker.RetainedApplicationMessage
    for m in state["retained"]:
        data = base64.b64decode(m["data"])
        context.retained_messages[m["topic"]] = Retained(None, m["topic"], data, m["qos"])
    for s in state["sessions"]:
        client_id = s["client_id"]
        await context.add_subscription(client_id, None, None)
        for topic_filter, qos in s["subscriptions"]:
            await context.add_subscription(client_id, topic_filter, qos)
        session = context.get_session(client_id)
        session.clean_session = False
        for m in s["waiting"]:
            data = base64.b64decode(m["data"])
            session.retained_messages.put_nowait(Retained(None, m["topic"], data, m["qos"]))


class EmbeddedBroker:
    """amqtt on 127.0.0.1:`port`, in a thread of the demo's process, its retained messages
    and persistent sessions kept in the file `state`, its log in `log`."""

    def __init__(self, port: int, state: Path, log: Path) -> None:
        self.port = port
        self.state = state
        self.log = log
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="broker", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                f"{__name__}.AdmitEveryone": {},
                f"{__name__}.KeepSessions": {"path": str(self.state)},
            },
        }

    def start(self, timeout: float = 20.0) -> None:
        amqtt.broker.BrokerProtocolHandler = AckedHandler  # the handler every connection gets
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        for name, level in (("amqtt", logging.INFO), ("transitions", logging.WARNING)):
            logger = logging.getLogger(name)
            logger.handlers = [handler]
            logger.setLevel(level)
            logger.propagate = False
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the broker did not start in {timeout:.0f} s; see {self.log}")
        if self._error is not None:
            raise RuntimeError(f"the broker did not start: {self._error}")

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down, saving its state first."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            broker = KioskBroker(self.config())
            await broker.start()
        except Exception as why:  # a port in use, a state file that cannot be written, ...
            self._error = why
            self._ready.set()
            return
        self._ready.set()
        await self._stopping.wait()
        await broker.shutdown()


# --- the processes ---------------------------------------------------------------------------


# Looked up here, not in the child: between fork and exec it only makes the system call.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In a child, before it runs: the kernel sends it SIGTERM if the demo dies (Linux)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A process of the demo, in a process group of its own so that Ctrl-C reaches the demo
    alone, which stops its processes in order; its output goes to `log`."""

    def __init__(self, name: str, args: Sequence[str], log: Path) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        self.proc: subprocess.Popen[str] | None = None

    def start(self, **popen: Any) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdin=popen.pop("stdin", subprocess.DEVNULL),
                stdout=popen.pop("stdout", log),
                stderr=log,
                text=True,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                **popen,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: signal.Signals, timeout: float) -> int | None:
        """Send `sig`, wait up to `timeout` s, then SIGKILL; the exit code, None if none ran."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class KioskProcess(Child):
    """`kiosk-host virtual-kiosk`, driven on standard input; its screens are collected."""

    def __init__(self, kiosk: Kiosk, broker: str, var: Path) -> None:
        state = var / "kiosks" / kiosk.store / kiosk.device
        args = [
            *KIOSK_HOST, "virtual-kiosk", "--store", kiosk.store, "--device", kiosk.device,
            "--broker", broker, "--state-dir", str(state), "--board", kiosk.board,
            "--letter", kiosk.letter,
        ]  # fmt: skip
        log = var / "logs" / f"kiosk-{kiosk.store}-{kiosk.device}.log"
        super().__init__(f"{kiosk.store}/{kiosk.device}", args, log)
        self.kiosk = kiosk
        self.screens: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def start(self, **popen: Any) -> None:
        super().start(stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1)
        assert self.proc is not None
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("SCREEN "):
                name, _, text = line[len("SCREEN ") :].rstrip("\n").partition(": ")
                with self._changed:
                    self.screens.append((name, text))
                    self._changed.notify_all()

    def screen(self) -> tuple[str, str]:
        with self._changed:
            return self.screens[-1] if self.screens else ("", "")

    def shown(self) -> int:
        """How many screens it has shown: a mark for `wait_screen`."""
        with self._changed:
            return len(self.screens)

    def showing(self, name: str) -> Callable[[], bool]:
        return lambda: self.screen()[0] == name

    def wait_screen(self, names: set[str], since: int, timeout: float) -> tuple[str, str] | None:
        """The first screen in `names` shown after the first `since` screens, or None."""

        def found() -> tuple[str, str] | None:
            return next((s for s in self.screens[since:] if s[0] in names), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout)
            return found()

    def press(self, button: int, expect: set[str], timeout: float = 10.0) -> tuple[str, str] | None:
        """Press `button` (1 = leftmost); the screen it leads to if in `expect`, else None."""
        since = self.shown()
        self.send(f"press {button}")
        return self.wait_screen(expect, since, timeout)

    def send(self, line: str) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):  # it stopped; the supervisor sees it
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()


class Watcher:
    """The demo's own MQTT client: the aggregator's and the kiosks' live statuses, the stores'
    retained summaries, and the alerts as they are raised."""

    def __init__(self, url: str, on_alert: Callable[[dict[str, Any]], None]) -> None:
        u = urlparse(url)
        self.on_alert = on_alert
        self.host_online = False
        self.devices: dict[tuple[str, str], str] = {}  # statuses sent since the demo started
        self.summaries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{CLIENT_ID}-watch-{os.getpid()}")
        if u.username:
            c.username_pw_set(u.username, u.password)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 2)
        c.connect(u.hostname or "127.0.0.1", u.port or 1883, keepalive=30)
        c.loop_start()
        self.client = c

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:  # fmt: skip
        for topic in ("kiosk/v1/_host/status", "kiosk/v1/+/+/status", "kiosk/v1/+/summary",
                      "kiosk/v1/+/alerts"):  # fmt: skip
            client.subscribe(topic, qos=1)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        parts = msg.topic.split("/")
        with self._lock:
            if msg.topic == "kiosk/v1/_host/status":
                # live, not a retained one from an earlier run
                self.host_online = payload.get("state") == "online" and not msg.retain
            elif parts[-1] == "status" and len(parts) == 5 and not msg.retain:
                self.devices[(parts[2], parts[3])] = str(payload.get("state"))
            elif parts[-1] == "summary":
                self.summaries[parts[2]] = payload
        if parts[-1] == "alerts" and not msg.retain:
            self.on_alert(payload)

    def online(self, kiosks: Sequence[Kiosk]) -> int:
        with self._lock:
            return sum(1 for k in kiosks if self.devices.get((k.store, k.device)) == "online")

    def summary(self, store: str) -> dict[str, Any] | None:
        with self._lock:
            return self.summaries.get(store)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the demo --------------------------------------------------------------------------------


class DemoError(Exception):
    """The demo cannot go on; the message says why and where to look."""


class Stopped(Exception):
    """Ctrl-C (or SIGTERM) while the demo was starting."""


class Demo:
    """Starts the broker, the aggregator and the kiosks, plays the script, stops them all."""

    def __init__(self, args: argparse.Namespace) -> None:
        if not args.speed > 0:
            raise ValueError(f"--speed must be above 0, got {args.speed}")
        if not args.minutes >= 0:
            raise ValueError(f"--minutes must be 0 or more, got {args.minutes}")
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
        self.broker: EmbeddedBroker | None = None
        self.watcher: Watcher | None = None
        self.aggregator: Child | None = None
        self.kiosks: dict[tuple[str, str], KioskProcess] = {}
        self.codes: dict[tuple[str, str], str] = {}  # (store, the script's case name) -> code
        self.crowd: list[str] = []  # everyday ratings not printed yet
        self._out = threading.Lock()
        self._next_figures = 0.0
        self._next_crowd = 0.0
        self.http_port = pick_port(args.http_port, HTTP_PORT, "DEMO_HTTP_PORT")
        self.mqtt_port = (
            0 if args.broker else pick_port(args.mqtt_port, MQTT_PORT, "DEMO_MQTT_PORT")
        )

    # -- saying what happens ---------------------------------------------------------------

    def say(self, text: str) -> None:
        s = int(time.monotonic() - self.t0)
        with self._out:
            print(f"{s // 60:02d}:{s % 60:02d}  {text}", flush=True)

    def on_alert(self, alert: dict[str, Any]) -> None:
        mark = {"critical": "!!", "warning": "! "}.get(str(alert.get("severity")), "  ")
        self.say(f"{mark}ALERT {alert.get('store')} {alert.get('type')}: {alert.get('text')}")

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
        if self.args.broker:
            self.url = self.args.broker
            self.say(f"Broker: {self.url} (MQTT_URL)")
        else:
            self.broker = EmbeddedBroker(
                self.mqtt_port, self.var / "broker" / "state.json", self.logs / "broker.log"
            )
            try:
                self.broker.start()
            except RuntimeError as why:
                raise DemoError(str(why)) from None
            self.url = self.broker.url
            self.say(
                f"Broker: {self.url} (embedded amqtt; state in {self.shown(self.var)}/broker/)"
            )
        http_port = self.http_port
        try:
            self.watcher = Watcher(self.url, self.on_alert)
        except OSError as why:
            raise DemoError(f"no broker at {self.url}: {why}") from None
        self.aggregator = Child(
            "aggregator",
            [*KIOSK_HOST, "serve", "--broker", self.url, "--db", str(self.db),
             "--stores", str(self.stores), "--client-id", CLIENT_ID,
             "--http", f"127.0.0.1:{http_port}", "--token-file", str(self.token_file())],
            self.logs / "aggregator.log",
        )  # fmt: skip
        self.aggregator.start()
        watcher = self.watcher
        self.wait(lambda: watcher.host_online, 60, "aggregator online")
        self.say(
            f"Aggregator: {self.command(['serve', '--db', self.shown(self.db)])} ... "
            f"(log in {self.shown(self.aggregator.log)})"
        )
        for k in KIOSKS:
            kiosk = KioskProcess(k, self.url, self.var)
            kiosk.start()
            self.kiosks[(k.store, k.device)] = kiosk
        for kiosk in self.kiosks.values():
            self.wait(kiosk.showing("idle"), 90, f"{kiosk.name} ready")
        self.wait(lambda: watcher.online(KIOSKS) == len(KIOSKS), 60, "kiosks online")
        self.say(f"Kiosks: {', '.join(k.name for k in self.kiosks.values())} online")
        self.wait(lambda: not port_free(http_port), 60, "dashboard")
        self.say(
            f"Dashboard: http://127.0.0.1:{http_port}/ (the managers' token for changes is in "
            f"{self.shown(self.token_file())}); Ctrl-C stops the demo"
        )

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
            else:
                self.confirm(step)
        self.flush_crowd()
        self.say("The customers are done; all keeps running until Ctrl-C.")

    def idle(self, seconds: float) -> None:
        """Wait, looking after the processes and printing the stores' figures each minute."""
        if self.stop.wait(max(0.0, seconds)):
            raise Stopped
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
        if kiosk.screen()[0] == "code":  # the last customer copied the code down and left
            kiosk.press(NO, {"idle"})
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
        ok, out = self.cli([*args, "--stores", str(self.stores)])
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

    # -- stopping --------------------------------------------------------------------------

    def shutdown(self) -> None:
        """The kiosks (as at closing time: switched off, so the broker publishes their last
        will), then the aggregator (it stores and acknowledges what it has received), then
        the broker (it saves its state). Each is killed if it does not stop in time."""
        self.flush_crowd()
        last = ", then the broker" if self.broker is not None else ""
        self.say(f"Stopping: the kiosks, the aggregator{last} ...")
        for kiosk in self.kiosks.values():
            if kiosk.running() and kiosk.proc is not None:
                kiosk.proc.send_signal(signal.SIGTERM)
        for kiosk in self.kiosks.values():
            kiosk.stop(signal.SIGTERM, 10)
        watcher = self.watcher
        if watcher is not None and self.aggregator is not None and self.aggregator.running():
            deadline = time.monotonic() + 10
            while watcher.online(KIOSKS) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # for the aggregator to store the last statuses
        if self.aggregator is not None:
            self.aggregator.stop(signal.SIGINT, 30)
        if watcher is not None:
            watcher.close()
        if self.broker is not None:
            self.broker.stop()
        self.say(
            f"Stopped. The data stays in {self.shown(self.var)}/; `make demo` carries on from "
            f"it (delete {self.shown(self.var)}/ to start afresh)."
        )


def run(args: argparse.Namespace) -> int:
    """`kiosk-host demo`: runs until Ctrl-C or SIGTERM; 1 when something could not start."""
    demo = Demo(args)
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
    except DemoError as why:
        print(f"kiosk-host demo: {why}", file=sys.stderr, flush=True)
        code = 1
    finally:
        demo.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
