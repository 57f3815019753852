"""Virtual kiosks as separate processes, and a paho-mqtt watcher, for tests against a broker."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.shipped import ROOT
from kiosk_host.sim.screen_lines import parse_screen

KIOSK_HOST = ROOT / ".venv" / "bin" / "kiosk-host"


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def suback(client: paho.Client) -> threading.Event:
    """Set when the broker answers `client`'s next SUBSCRIBE (its SUBACK); hook it before the
    client connects when the subscription is made on connect."""
    answered = threading.Event()
    client.on_subscribe = lambda *args: answered.set()
    return answered


class VirtualKiosk:
    """`kiosk-host virtual-kiosk` in its own process; its screen lines are collected."""

    def __init__(
        self, broker: str, state_dir: Path, store: str = "store-12", device: str = "till-1",
        board: str = "esp32_devkitc_ssd1306", extra: list[str] | None = None,
    ) -> None:  # fmt: skip
        self.args = [
            str(KIOSK_HOST), "virtual-kiosk", "--store", store, "--device", device,
            "--broker", broker, "--state-dir", str(state_dir), "--board", board, *(extra or []),
        ]  # fmt: skip
        self.screens: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            cwd=ROOT,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            shown = parse_screen(line)
            if shown is not None:
                with self._lock:
                    self.screens.append(shown)

    def send(self, *lines: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("".join(line + "\n" for line in lines))
        self.proc.stdin.flush()

    def count(self, name: str) -> int:
        with self._lock:
            return sum(1 for n, _ in self.screens if n == name)

    def last(self) -> tuple[str, str]:
        with self._lock:
            return self.screens[-1] if self.screens else ("", "")

    def wait_screen(self, name: str, timeout: float = 15, text: str | None = None) -> None:
        def shown() -> bool:
            return self.last()[0] == name and (text is None or self.last()[1] == text)

        wait_until(shown, timeout, f"screen {name} {text or ''}")

    def kill(self) -> None:
        """As a power cut: the process ends at once, nothing said to the broker."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def wait_exit(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)


class Watcher:
    """A paho-mqtt subscriber on a persistent session: keeps every message it receives.
    Ready once the broker has answered its subscription (the SUBACK): whatever is published
    after that reaches it."""

    def __init__(self, broker: str, topic: str = "kiosk/v1/#", client_id: str = "watcher") -> None:
        url = urlparse(broker)
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError(f"timed out after 10 s waiting for the watcher's SUBACK ({topic})")

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, suffix: str) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for _, payload, _ in self.on("/event")]

    def seqs(self) -> list[int]:
        return [int(e["seq"]) for e in self.events()]

    def close(self) -> None:
        # disconnect first: it wakes paho's loop, which then ends at once rather than after
        # its select() times out (a second)
        self.client.disconnect()
        self.client.loop_stop()


def first_seen(seqs: list[int]) -> list[int]:
    """The sequence numbers in the order they first arrived (redeliveries left out)."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def aggregator_online(broker: str, since: int, timeout: float = 30) -> None:
    """Wait until the aggregator's retained status says `online` as of `since` (Unix seconds)
    or later. `serve` says "serving" once it has asked for its connection; it publishes this
    status after its subscription, so from then on what a kiosk publishes reaches it (on a
    fresh broker, events published before reach no one: there is no session to keep them)."""
    status = Watcher(broker, "kiosk/v1/_host/status", f"watch-host-{time.monotonic_ns()}")

    def online() -> bool:
        said = [json.loads(p) for _, p, _ in status.messages if p]
        return any(s["state"] == "online" and (s["ts"] or 0) >= since for s in said)

    try:
        wait_until(online, timeout, "the aggregator online")
    finally:
        status.close()
