"""How long a kiosk takes to drain 5,000 queued events through mosquitto, against a paho-mqtt
publisher sending the same 5,000 payloads at QoS 1 in the same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.sim.virtual_kiosk import load_firmware, module
from tests.broker import Mosquitto
from tests.virtual_kiosks import VirtualKiosk, Watcher, wait_until

EVENTS = 5000


def queue_events(state_dir: Path) -> list[bytes]:
    """Fill a kiosk's outbox (its simulated flash) with EVENTS ratings, as after an outage."""
    load_firmware()
    state_dir.mkdir(parents=True, exist_ok=True)
    outbox = module("outbox").Outbox(str(state_dir / "outbox"), EVENTS)
    events = module("wire").Events("bench", "till-1")
    payloads = []
    for i in range(EVENTS):
        seq = outbox.next_seq()
        payload = events.rating(seq, 1763900000 + i, 1000 * i, 4, 4, "till-1", None)
        outbox.append(seq, payload)
        payloads.append(payload)
    return payloads


def arrival_span(watcher: Watcher, suffix: str) -> float:
    """Seconds from the first to the last of EVENTS messages arriving at the watcher."""
    wait_until(lambda: len(watcher.on(suffix)) >= 1, 60, "the first message")
    first = time.monotonic()
    wait_until(lambda: len({p for _, p, _ in watcher.on(suffix)}) >= EVENTS, 300, "all messages")
    return time.monotonic() - first


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker")
        broker.start()
        try:
            payloads = queue_events(Path(tmp) / "kiosk")
            watcher = Watcher(broker.url, "kiosk/v1/bench/#", "bench-watch")
            publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho")
            publisher.connect(broker.host, broker.port)
            publisher.loop_start()
            for payload in payloads:
                publisher.publish("kiosk/v1/bench/paho/event", payload, qos=1)
            paho_s = arrival_span(watcher, "/paho/event")
            publisher.loop_stop()
            publisher.disconnect()
            started = time.monotonic()
            kiosk = VirtualKiosk(
                broker.url,
                Path(tmp) / "kiosk",
                store="bench",
                extra=["--outbox-records", str(EVENTS)],
            )
            try:
                kiosk_s = arrival_span(watcher, "/till-1/event")
                total_s = time.monotonic() - started
            finally:
                kiosk.kill()
                watcher.close()
        finally:
            broker.stop()
    print(
        f"drain of {EVENTS:,} queued events: kiosk {kiosk_s:.2f} s ({total_s:.2f} s from start), "
        f"paho publisher {paho_s:.2f} s; ratio {kiosk_s / paho_s:.2f}"
    )
