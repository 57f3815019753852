"""The aggregator's writer process: classifies, stores and ticks what the MQTT receiver hands it.

Receiving with paho-mqtt and validating, classifying and storing each cost a CPython thread
about as much again; in one interpreter the GIL runs them one after the other. So the
receiver (`ingest`) keeps the MQTT session and hands raw messages over a pipe, in batches,
to this process, which owns the database: it stores each batch in one transaction, runs the
recovery engine's clock, and answers with what was stored and what to publish. The receiver
acknowledges a batch's messages only after that answer, so a crash of either process before
the commit leaves them unacknowledged for the broker to deliver again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.views import case_list, recognition, summary
from kiosk_host.rules.recovery import event_time
from kiosk_host.rules.stores import Stores, is_open
from kiosk_host.storage.sqlite import DeadLetter, DeviceStatus, EventRow, Storage
from kiosk_host.wire import topics
from kiosk_host.wire.contract import Cleared, Contract, Message, Rejection

KIOSK_CHANNELS = ("event", "status", "telemetry")  # what kiosks send; the rest is the host's
MAX_SKEW_S = 300  # a device clock further ahead of the arrival than this is not believed
NO_STORES = Stores({})  # every store on the defaults

Raw = tuple[str, bytes, int]  # topic, payload, arrival (Unix seconds)
Publication = tuple[str, bytes, bool]  # topic, payload, retained
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


@dataclass
class Reply:
    """What one request to the writer process did."""

    events: int = 0  # new events stored
    duplicates: int = 0  # events stored before: redeliveries and replays
    dead: int = 0  # dead letters written
    publish: list[Publication] = field(default_factory=list)  # alerts and retained views


class Writer:
    """Stores batches and runs the clock of the cases, alerts and retained views."""

    TICK_S = 1.0  # deadlines are checked, and retained views refreshed, this often

    def __init__(self, storage: Storage, stores: Stores = NO_STORES) -> None:
        self.storage = storage
        self.stores = stores
        self.contract = Contract.load()
        self.engine = Engine(stores)
        self.dirty: set[str] = set()  # stores whose retained views are out of date
        self.rated: set[str] = set()  # stores with new ratings: surge and praise to check
        self._changes = storage.outside_changes()
        self._next_tick = 0.0

    def handle(self, batch: list[Raw]) -> Reply:
        """Store a batch in one transaction, then tick if a tick is due."""
        reply = self.write(batch) if batch else Reply()
        if time.monotonic() >= self._next_tick:
            self._next_tick = time.monotonic() + self.TICK_S
            reply.publish = self.tick(int(time.time()))
        return reply

    def write(self, batch: list[Raw]) -> Reply:
        events: list[EventRow] = []
        dead: list[DeadLetter] = []
        devices: list[DeviceStatus] = []
        for topic, payload, arrived in batch:
            item = classify(self.contract, topic, payload, arrived, self.stores)
            if isinstance(item, EventRow):
                events.append(item)
            elif isinstance(item, DeadLetter):
                dead.append(item)
            elif isinstance(item, DeviceStatus):
                devices.append(item)
        result = self.storage.write_batch(events, dead, devices, apply=self.engine.apply)
        self.dirty.update(e.store for e in events)
        self.rated.update(e.store for e in events if e.kind == "rating")
        return Reply(result.events, result.duplicates, result.dead_letters)

    def tick(self, now: int) -> list[Publication]:
        """Deadlines and stream alerts; the alerts raised and, at most once a tick per store,
        its retained views after a change."""
        changes = self.storage.outside_changes()
        if changes != self._changes:  # a case fixed from the CLI: its store's views change
            self._changes = changes
            self.dirty.update(self.storage.case_stores())
        self.engine.tick(self.storage)
        self.engine.stream_alerts(self.storage, self.rated)
        self.rated.clear()
        out: list[Publication] = []
        alerts = self.storage.unpublished_alerts()
        for _, store, payload in alerts:
            self.dirty.add(store)
            out.append((topics.topic("alerts", store=store), payload, False))
        if alerts:  # handed over to be published: the receiver publishes at QoS 1
            with self.storage.transaction():
                self.storage.mark_published([i for i, _, _ in alerts])
        for store in sorted(self.dirty):
            cfg = self.stores.get(store)
            views = (
                ("cases", case_list(self.storage, store, now)),
                ("summary", summary(self.storage, cfg, store, now)),
                ("recognition", recognition(self.storage, cfg, store, now)),
            )
            out += [
                (topics.topic(name, store=store), json.dumps(v).encode(), True) for name, v in views
            ]
        self.dirty.clear()
        return out


def serve(conn: Connection) -> None:
    """The writer process: opens the database it is sent, then answers each batch on `conn`
    until it is told to stop (None) or the receiver is gone."""
    db, stores = conn.recv()
    storage = Storage(db)
    writer = Writer(storage, stores)
    try:
        conn.send("ready")
        while True:
            batch = conn.recv()
            if batch is None:
                break
            conn.send(writer.handle(batch))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the receiver died: what is committed stays, the rest comes again from the broker
    finally:
        storage.close()


if __name__ == "__main__":  # started by `ingest` with its end of a socket pair
    # through the module's own name, so that what is sent back unpickles as
    # kiosk_host.aggregator.writer's
    from kiosk_host.aggregator.writer import serve as serve_receiver

    serve_receiver(Connection(int(sys.argv[1])))
