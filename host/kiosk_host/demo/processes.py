"""The demo's processes: the broker, the aggregator and the kiosks, started, watched, stopped.

Plain `subprocess`, because the demo decides how they stop: each runs in a process group of
its own, so that Ctrl-C reaches the demo alone and it stops the kiosks first (the broker
publishes their last will), then the aggregator (it stores what it has received), then the
broker (it saves its state); on Linux the kernel stops them if the demo dies. The kiosks are
driven on standard input and show their screens on standard output; the demo's own MQTT
client follows their statuses and the alerts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.sim.screen_lines import parse_screen
from kiosk_host.wire import topics
from kiosk_host.wire.broker_url import client_options


@dataclass(frozen=True)
class Kiosk:
    """A virtual kiosk of the demo."""

    store: str
    device: str  # also its station
    letter: str  # the first character of its recovery codes
    board: str  # a file in boards/


def identity_folder(var: Path, kiosk: Kiosk) -> Path:
    """Where the demo keeps a kiosk's identity, as `kiosk-host provision` lays it out."""
    return var / "devices" / kiosk.store / kiosk.device


CLIENT_ID = "kiosk-host-demo"  # the aggregator's persistent session on the broker
KIOSK_HOST = (sys.executable, "-m", "kiosk_host.cli.main")


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

    def __init__(self, kiosk: Kiosk, var: Path, interrupted: threading.Event | None = None) -> None:
        """`interrupted` (the demo's Ctrl-C) ends a wait for a screen at once. The kiosk runs
        as its identity in `var`/devices (`identity_folder`), which names its broker."""
        state = var / "kiosks" / kiosk.store / kiosk.device
        args = [
            *KIOSK_HOST, "virtual-kiosk", "--identity", str(identity_folder(var, kiosk)),
            "--state-dir", str(state),
        ]  # fmt: skip
        log = var / "logs" / f"kiosk-{kiosk.store}-{kiosk.device}.log"
        super().__init__(f"{kiosk.store}/{kiosk.device}", args, log)
        self.kiosk = kiosk
        self.interrupted = interrupted or threading.Event()
        self.screens: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def start(self, **popen: Any) -> None:
        super().start(stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1)
        assert self.proc is not None
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            shown = parse_screen(line)
            if shown is not None:
                with self._changed:
                    self.screens.append(shown)
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
        """The first screen in `names` shown after the first `since` screens; None when none
        comes in `timeout` s or the demo is interrupted first."""

        def found() -> tuple[str, str] | None:
            return next((s for s in self.screens[since:] if s[0] in names), None)

        deadline = time.monotonic() + timeout
        with self._changed:
            while (shown := found()) is None and not self.interrupted.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.1))  # a new screen wakes it at once
            return shown

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

    SUBSCRIPTIONS = ("hostStatus", "status", "summary", "alerts")  # channels of the contract

    def __init__(self, url: str, on_alert: Callable[[dict[str, Any]], None]) -> None:
        self.on_alert = on_alert
        self.host_online = False
        self.devices: dict[tuple[str, str], str] = {}  # statuses sent since the demo started
        self.summaries: dict[str, dict[str, Any]] = {}
        self.subscribed = threading.Event()  # the broker has confirmed the subscriptions
        self._lock = threading.Lock()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{CLIENT_ID}-watch-{os.getpid()}")
        host, port = client_options(c, url)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 2)
        c.connect(host, port, keepalive=30)
        c.loop_start()
        self.client = c

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:  # fmt: skip
        client.subscribe([(topics.topic_filter(key), 1) for key in self.SUBSCRIPTIONS])

    def _on_subscribe(self, client: paho.Client, userdata: object, mid: int, codes: object,
                      props: object = None) -> None:  # fmt: skip
        self.subscribed.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        found = topics.parse(msg.topic)
        if found is None:
            return
        key, params = found
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        with self._lock:
            if key == "hostStatus":
                # live, not a retained one from an earlier run
                self.host_online = payload.get("state") == "online" and not msg.retain
            elif key == "status" and not msg.retain:
                self.devices[(params["store"], params["device"])] = str(payload.get("state"))
            elif key == "summary":
                self.summaries[params["store"]] = payload
        if key == "alerts" and not msg.retain:
            self.on_alert(payload)

    def online(self, kiosks: Sequence[Kiosk]) -> int:
        with self._lock:
            return sum(1 for k in kiosks if self.devices.get((k.store, k.device)) == "online")

    def offline(self, kiosks: Sequence[Kiosk]) -> list[Kiosk]:
        """The kiosks whose going offline (their last will) it saw since the demo started."""
        with self._lock:
            return [k for k in kiosks if self.devices.get((k.store, k.device)) == "offline"]

    def summary(self, store: str) -> dict[str, Any] | None:
        with self._lock:
            return self.summaries.get(store)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
