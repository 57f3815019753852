"""The aggregator's durable ingest: its rate against a bare paho-mqtt subscriber draining the
same stream through the same broker, and its latency from publish to commit at 500 events/s."""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk_host.aggregator.receiver import Ingest
from kiosk_host.storage.sqlite import Storage
from tests.broker import Mosquitto
from tests.test_host_ingest import publish_all, publisher, rating, stream
from tests.virtual_kiosks import wait_until

EVENTS = 50_000
TOPIC = "kiosk/v1/+/+/event"


def bare_subscriber(
    broker: Mosquitto, received: list[int], subscribed: threading.Event, v5: bool = False
) -> paho.Client:
    """A paho subscriber on a persistent session that only counts: MQTT 3.1.1, or MQTT 5 as
    the aggregator speaks it (paho decodes MQTT 5's properties in Python, at a cost)."""
    if v5:
        c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-bare-v5", protocol=paho.MQTTv5
        )
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = 3600
        options: dict[str, Any] = {"clean_start": False, "properties": session}
    else:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", clean_session=False)
        options = {}
    c.max_inflight_messages_set(100)
    c.on_message = lambda client, userdata, msg: received.append(1)
    c.on_connect = lambda client, userdata, flags, rc, props: client.subscribe(TOPIC, qos=1)
    c.on_subscribe = lambda *args: subscribed.set()
    c.connect(broker.host, broker.port, **options)
    return c


def drain_rates(broker: Mosquitto, db: Path) -> tuple[float, float, float]:
    """Events per second drained from a queue of EVENTS that waited for each subscriber: a
    bare paho subscriber on MQTT 3.1.1, one on MQTT 5, and durable ingest; one at a time."""
    bares: list[tuple[paho.Client, list[int]]] = []
    for v5 in (False, True):
        received: list[int] = []
        subscribed = threading.Event()
        bare = bare_subscriber(broker, received, subscribed, v5)
        bare.loop_start()
        assert subscribed.wait(10), "the bare subscriber's SUBACK"
        bare.disconnect()
        bare.loop_stop()
        bares.append((bare, received))
    storage = Storage(db)
    ingest = Ingest(broker.url, db, "bench-ingest")
    ingest.start()
    wait_until(ingest.client.is_connected, 10, "the aggregator")
    time.sleep(0.5)  # its subscription, made on connect; the receiver reports no SUBACK
    ingest.stop()  # every session persists: the broker queues the stream for each
    pub = publisher(broker, "bench-publisher")
    publish_all(pub, stream("bench", 50, EVENTS // 50))
    pub.loop_stop()
    rates = []
    for bare, got in bares:
        start = time.monotonic()
        bare.reconnect()
        bare.loop_start()
        wait_until(lambda got=got: len(got) >= EVENTS, 300, "the bare subscriber")
        rates.append(EVENTS / (time.monotonic() - start))
        bare.loop_stop()
        bare.disconnect()
    start = time.monotonic()
    ingest = Ingest(broker.url, db, "bench-ingest")
    ingest.start()
    wait_until(lambda: storage.event_count("bench") >= EVENTS, 300, "durable ingest")
    ingest_rate = EVENTS / (time.monotonic() - start)
    ingest.stop()
    return rates[0], rates[1], ingest_rate


def latencies(broker: Mosquitto, db: Path, rate: int = 500, seconds: int = 10) -> list[float]:
    sent: dict[int, float] = {}
    lat: list[float] = []
    lock = threading.Lock()

    def committed(messages: list[tuple[str, bytes]]) -> None:
        now = time.monotonic()
        seqs = [json.loads(p)["seq"] for t, p in messages if t.endswith("/event")]
        with lock:
            lat.extend(now - sent[seq] for seq in seqs if seq in sent)

    ingest = Ingest(broker.url, db, "bench-latency")
    ingest.on_committed = committed
    ingest.start()
    wait_until(ingest.client.is_connected, 10, "the aggregator")
    time.sleep(0.5)
    pub = publisher(broker, "bench-steady")
    start = time.monotonic()
    for seq in range(1, rate * seconds + 1):
        due = start + seq / rate
        time.sleep(max(0.0, due - time.monotonic()))
        with lock:
            sent[seq] = time.monotonic()
        pub.publish("kiosk/v1/steady/till-1/event", rating("steady", "till-1", seq), qos=1)
    wait_until(lambda: len(lat) >= rate * seconds, 30, "every event committed")
    pub.loop_stop()
    ingest.stop()
    return lat


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker")
        broker.start()
        try:
            bare, bare_v5, durable = drain_rates(broker, Path(tmp) / "rate.db")
            lat = sorted(latencies(broker, Path(tmp) / "latency.db"))
        finally:
            broker.close()
    p50 = statistics.median(lat) * 1000
    p99 = lat[int(len(lat) * 0.99)] * 1000
    print(
        f"durable ingest of {EVENTS:,} events: {durable:,.0f}/s; bare paho subscriber on the "
        f"same stream: {bare:,.0f}/s; ratio {durable / bare:.2f} (target 0.70)"
    )
    print(
        f"  the same against a bare paho subscriber speaking MQTT 5, as the aggregator does: "
        f"{bare_v5:,.0f}/s; ratio {durable / bare_v5:.2f}"
    )
    print(f"publish to commit at 500 events/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
