"""A kiosk's recent log lines over MQTT: a `logs` command, and the lines it publishes once.

The kiosk keeps its last 32 lines in RAM (firmware/logring.py) with the uptime of each; asked
with a `logs` command, it publishes them once on its own log topic (log.json), naming the
command's id, which is how the answer is told from another tool's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kiosk_host.fleet.commands import Broker, command, send_command
from kiosk_host.wire import topics
from kiosk_host.wire.contract import Contract, Message
from kiosk_host.wire.identifiers import check_identifier

WAIT_S = 20.0  # for an online kiosk's answer


@dataclass(frozen=True)
class KioskLog:
    """What the kiosk sent, or None when it did not answer in time."""

    store: str
    device: str
    kiosk_state: str | None  # online / offline from its retained status when asked
    log: dict[str, Any] | None  # the log.json payload

    def to_json(self) -> dict[str, Any]:
        return {"store": self.store, "device": self.device, "log": self.log}

    def lines(self) -> list[str]:
        kiosk = f"{self.store}/{self.device}"
        log = self.log
        if log is None:
            state = self.kiosk_state or "not known to the broker"
            return [
                f"{kiosk} did not send its log in time (it is {state}): an offline kiosk sends "
                "it when it connects, to whoever asks then; ask again once it is online"
            ]
        now = int(log["up_ms"])
        lost = f"; {log['lost']} older lines no longer kept" if log["lost"] else ""
        out = [f"{kiosk}: up {uptime(now)}, {len(log['lines'])} lines{lost}"]
        for line in log["lines"]:
            again = ""
            if "count" in line:
                again = f" ({line['count']} times in a row, last at up {uptime(line['last_ms'])})"
            ago = ago_text(now - int(line["up_ms"]))
            out.append(f"  up {uptime(line['up_ms'])} ({ago} ago)  {line['text']}{again}")
        return out


def uptime(ms: int) -> str:
    """Milliseconds since the kiosk booted as [Nd ]HH:MM:SS.mmm."""
    s, milli = divmod(int(ms), 1000)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{f'{d}d ' if d else ''}{h:02d}:{m:02d}:{s:02d}.{milli:03d}"


def ago_text(ms: int) -> str:
    s = max(0, int(ms)) // 1000
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h"


def fetch(broker: Broker, store: str, device: str, wait_s: float = WAIT_S) -> KioskLog:
    """Ask the kiosk for its log and wait (up to `wait_s`) for it."""
    check_identifier("--store", store)
    check_identifier("--device", device)
    topic = topics.topic("log", store=store, device=device)
    broker.listen([topic])  # before the command: the log is not retained
    cmd = command("logs")
    sent = send_command(broker, store, device, cmd)
    deadline = time.monotonic() + wait_s
    seen = 0
    contract = Contract.load()
    while time.monotonic() < deadline:
        for t, raw in broker.heard(seen):
            seen += 1
            result = contract.validate(t, raw)
            if isinstance(result, Message) and result.payload.get("id") == cmd["id"]:
                return KioskLog(store, device, sent.kiosk_state, result.payload)
        broker.check_connected()
        time.sleep(0.05)
    return KioskLog(store, device, sent.kiosk_state, None)
