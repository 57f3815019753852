"""Durable ingest: kiosk messages from the broker into storage, acknowledged only once stored.

paho-mqtt receives on a persistent session with manual acknowledgement; a writer thread
stores the messages in batches (bounded by count and by a few milliseconds), one
transaction each, and only after the commit acknowledges them. A crash before the commit
leaves the messages unacknowledged, so the broker delivers them again; the storage keeps
each event once. Anything that breaks the contract is dead-lettered with its reason.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host import __version__
from kiosk_host.contract import Cleared, Contract, Message, Rejection
from kiosk_host.engine import Engine
from kiosk_host.recovery import event_time
from kiosk_host.storage import DeadLetter, DeviceStatus, EventRow, Storage
from kiosk_host.stores import Stores, is_open
from kiosk_host.summary import case_list, recognition, summary

HOST_STATUS = "kiosk/v1/_host/status"
KIOSK_CHANNELS = ("event", "status", "telemetry")  # what kiosks send; the rest is the host's
MAX_SKEW_S = 300  # a device clock further ahead of the arrival than this is not believed
NO_STORES = Stores({})  # every store on the defaults


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    arrived: int


Classified = EventRow | DeadLetter | DeviceStatus | None


def classify(
    contract: Contract, topic: str, payload: bytes, arrived: int, stores: Stores = NO_STORES
) -> Classified:
    """What one message becomes: an event, a device's status, a dead letter, or nothing (the
    host's own publications and cleared retained messages)."""
    result = contract.validate(topic, payload)
    if isinstance(result, Rejection):
        return DeadLetter(topic, payload, result.rule, result.field, result.reason, arrived)
    if isinstance(result, Cleared) or result.channel not in KIOSK_CHANNELS:
        return None
    return _kiosk_message(result, payload, arrived, stores)


def _kiosk_message(m: Message, raw: bytes, arrived: int, stores: Stores) -> EventRow | DeviceStatus:
    store, device = m.params["store"], m.params["device"]
    if m.channel != "event":
        return DeviceStatus(store, device, m.payload, arrived, m.channel == "telemetry")
    p = m.payload
    at, flagged = event_time(p["ts"], arrived, True, MAX_SKEW_S)
    outside = p["kind"] == "rating" and not is_open(stores.get(store), at)
    return EventRow(
        store, device, p["seq"], p["kind"], at, p["ts"], arrived, flagged, p, raw.decode(), outside
    )


class Ingest:
    """The aggregator's ingest loop; `start()` connects and returns, `stop()` ends it."""

    BATCH_MAX = 500  # messages in one transaction, at most
    BATCH_MS = 5  # how long a batch waits for more messages before it is committed

    TICK_S = 1.0  # deadlines are checked, and retained case lists refreshed, this often

    def __init__(
        self,
        broker: str,
        storage: Storage,
        client_id: str = "kiosk-host",
        stores: Stores | None = None,
    ) -> None:
        url = urlparse(broker)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 1883
        self.storage = storage
        self.contract = Contract.load()
        self.client_id = client_id
        self.inbox: queue.Queue[Received] = queue.Queue()
        self.stored = self.duplicates = self.dead = 0
        self.on_stored: Callable[[list[EventRow]], None] | None = None
        self.stores = stores or NO_STORES
        self.engine = Engine(self.stores)
        self.dirty: set[str] = set()  # stores whose retained views are out of date
        self.rated: set[str] = set()  # stores with new ratings: surge and praise to check
        self._next_tick = 0.0
        self._changes = storage.outside_changes()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write, name="ingest-writer", daemon=True)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.manual_ack_set(True)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.will_set(HOST_STATUS, self._status("offline", None), qos=1, retain=True)
        if url.username:
            c.username_pw_set(url.username, url.password)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 5)
        self.client = c

    def _status(self, state: str, ts: int | None) -> bytes:
        return json.dumps(
            {"v": 1, "state": state, "host": self.client_id, "ts": ts, "version": __version__}
        ).encode()

    def start(self) -> None:
        self._writer.start()
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.publish(HOST_STATUS, self._status("offline", int(time.time())), 1, True)
        self._stop.set()
        self._writer.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:  # fmt: skip
        client.subscribe("kiosk/v1/#", qos=1)
        client.publish(HOST_STATUS, self._status("online", int(time.time())), 1, True)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self.inbox.put(Received(msg.topic, bytes(msg.payload), msg.mid, msg.qos, int(time.time())))

    def _write(self) -> None:
        """The one thread that writes: batches of messages, and the deadline ticks."""
        while not self._stop.is_set() or not self.inbox.empty():
            if time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + self.TICK_S
                self._tick()
            try:
                first = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.BATCH_MS / 1000
            while len(batch) < self.BATCH_MAX:
                wait = deadline - time.monotonic()
                try:
                    batch.append(
                        self.inbox.get(timeout=wait) if wait > 0 else self.inbox.get_nowait()
                    )
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[Received]) -> None:
        events: list[EventRow] = []
        dead: list[DeadLetter] = []
        devices: list[DeviceStatus] = []
        for r in batch:
            item = classify(self.contract, r.topic, r.payload, r.arrived, self.stores)
            if isinstance(item, EventRow):
                events.append(item)
            elif isinstance(item, DeadLetter):
                dead.append(item)
            elif isinstance(item, DeviceStatus):
                devices.append(item)
        result = self.storage.store_batch(events, dead, devices, apply=self.engine.apply)
        self.stored += result.events
        self.duplicates += result.duplicates
        self.dead += result.dead_letters
        for r in batch:  # only now: the batch is committed
            if r.qos:
                self.client.ack(r.mid, r.qos)
        self.dirty.update(e.store for e in events)
        self.rated.update(e.store for e in events if e.kind == "rating")
        if self.on_stored is not None and events:
            self.on_stored(events)

    def _tick(self) -> None:
        changes = self.storage.outside_changes()
        if changes != self._changes:  # a case fixed from the CLI: its store's views change
            self._changes = changes
            self.dirty.update(self.storage.case_stores())
        self.engine.tick(self.storage)
        self.engine.stream_alerts(self.storage, self.rated)
        self.rated.clear()
        alerts = self.storage.unpublished_alerts()
        for _, store, payload in alerts:
            self.dirty.add(store)
            self.client.publish(f"kiosk/v1/{store}/alerts", payload, qos=1)
        if alerts:
            with self.storage.transaction():
                self.storage.mark_published([i for i, _, _ in alerts])
        now = int(time.time())
        for store in sorted(self.dirty):  # at most once a tick, after the changes settle
            cases = case_list(self.storage, store, now)
            self.client.publish(f"kiosk/v1/{store}/cases", json.dumps(cases), 1, True)
            cfg = self.stores.get(store)
            figures = summary(self.storage, cfg, store, now)
            self.client.publish(f"kiosk/v1/{store}/summary", json.dumps(figures), 1, True)
            board = recognition(self.storage, cfg, store, now)
            self.client.publish(f"kiosk/v1/{store}/recognition", json.dumps(board), 1, True)
        self.dirty.clear()
