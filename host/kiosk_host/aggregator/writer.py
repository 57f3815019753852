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
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from kiosk_host.aggregator.engine import Engine
from kiosk_host.aggregator.leader import Alone, Leader, leader_for
from kiosk_host.aggregator.views import case_list, recognition, summary
from kiosk_host.errors import UserError
from kiosk_host.rules.health import BROKER_LOG, BrokerLog
from kiosk_host.rules.recovery import Alert, event_time
from kiosk_host.rules.stores import Stores, is_open
from kiosk_host.storage import open as open_storage
from kiosk_host.storage.protocol import Store
from kiosk_host.storage.sqlite import (
    REFUSED,
    DeadLetter,
    DeviceStatus,
    EventRow,
    StorageError,
    Stored,
)
from kiosk_host.wire import topics
from kiosk_host.wire.contract import Cleared, Contract, Message, Rejection

KIOSK_CHANNELS = ("event", "status", "telemetry")  # what kiosks send; the rest is the host's
MAX_SKEW_S = 300  # a device clock further ahead of the arrival than this is not believed
NO_STORES = Stores({})  # every store on the defaults

# topic, payload, arrival (Unix seconds), and True when it came retained on a kiosk channel the
# contract does not retain (the receiver has cleared the broker's copy)
Raw = tuple[str, bytes, int] | tuple[str, bytes, int, bool]
RULE_RETAINED = "retained"  # such a message: taken in as any other, and kept on record
Publication = tuple[str, bytes, bool]  # topic, payload, retained
Classified = EventRow | DeadLetter | DeviceStatus | None
RULE_HOST = "host"  # a message the host could not take in for a reason of its own: set aside
log = logging.getLogger(__name__)
T = TypeVar("T")


class Stop(UserError):
    """The writer process cannot go on for a reason the operator must fix (a full disk, a
    read-only database); the receiver stops ingest and `serve` prints it."""


def classify(
    contract: Contract, topic: str, payload: bytes, arrived: int, stores: Stores = NO_STORES
) -> Classified:
    """What one message becomes: an event, a device's status, a dead letter, or nothing (the
    host's own publications and cleared retained messages)."""
    result = contract.validate(topic, payload)
    if isinstance(result, Rejection):
        return DeadLetter(topic, payload, result.rule, result.field, result.reason, arrived)
    if isinstance(result, Message) and result.channel == "config":  # its telemetry interval
        p = result.payload
        keep = {"telemetry_interval_s": p["telemetry_interval_s"]}
        return DeviceStatus(result.params["store"], result.params["device"], keep, arrived, False)
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
        store, device, p["seq"], p["kind"], at, p["ts"], arrived, flagged, p, m.canonical(), outside
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
    KIOSKS_S = 30  # kiosks offline too long, or with their outbox filling, checked this often

    def __init__(
        self, storage: Store, stores: Stores = NO_STORES, leader: Leader | None = None
    ) -> None:
        self.storage = storage
        self.stores = stores
        # Only the group's leader ticks; every member stores, and tells the leader what.
        self.leader: Leader = leader or Alone()
        self.contract = Contract.load()
        self.engine = Engine(stores)
        self.dirty: set[str] = set()  # stores whose retained views are out of date
        self.rated: set[str] = set()  # stores with new ratings: surge and praise to check
        self.leader.outside(storage.outside_changes())  # the changes so far: seen
        self.broker_log = BrokerLog()
        self._next_tick = 0.0
        self._kiosks_due = 0
        self._took_over_at = 0  # the second this aggregator became its group's leader
        self._listening_since = int(time.time())  # kiosks' telemetry is heard from now on
        # Each kiosk's high-water mark waiting to go out, and when (monotonic) and what it
        # last was: a kiosk's outbox lets go of what its mark covers.
        self.marks_due: dict[tuple[str, str], int] = {}
        self._mark_at: dict[tuple[str, str], float] = {}
        self._mark_sent: dict[tuple[str, str], int] = {}

    def handle(self, batch: list[Raw]) -> Reply:
        """Store a batch in one transaction, then tick if a tick is due."""
        reply = self.write(batch) if batch else Reply()
        if time.monotonic() >= self._next_tick:
            self._next_tick = time.monotonic() + self.TICK_S
            if self._leading():
                reply.publish = self.tick(int(time.time()))
        reply.publish += self.marks(time.monotonic())
        return reply

    MARK_EVERY_S = 1.0  # a kiosk's mark goes out at most this often; the last one always does
    REGRESSION_ALERT_S = 3600  # a kiosk whose seq went back is reported at most this often

    def marks(self, now: float) -> list[Publication]:
        """The retained marks due now: of kiosks whose last went out MARK_EVERY_S ago or
        more. The others stay due, for the next batch or tick (the receiver asks at least
        every IDLE_S), so the last mark after a burst goes out too."""
        out: list[Publication] = []
        for key, mark in list(self.marks_due.items()):
            if now - self._mark_at.get(key, -self.MARK_EVERY_S) < self.MARK_EVERY_S:
                continue
            del self.marks_due[key]
            self._mark_at[key] = now
            self._mark_sent[key] = mark
            topic = topics.topic("ack", store=key[0], device=key[1])
            out.append((topic, b'{"v":1,"seq":%d}' % mark, True))
        return out

    def _due(self, result: Stored) -> None:
        for key, mark in result.marks.items():
            # A duplicate may be a kiosk sending again what the broker lost, retained mark
            # included, and a regression a kiosk whose count went back: either gets the
            # mark again (at the same pace); a mark past its count moves the count on.
            if result.duplicates or result.regressions or self._mark_sent.get(key) != mark:
                self.marks_due[key] = mark

    def _regressed(self, storage: Store, late: list[EventRow]) -> None:
        """A kiosk sent a new event under the seq of a stored one: its events are kept apart
        (storage), and a technician is told, once an hour per kiosk."""
        for store, device in sorted({(e.store, e.device) for e in late}):
            mine = [e for e in late if (e.store, e.device) == (store, device)]
            at = max(e.arrived for e in mine)
            last = storage.last_kiosk_alert_at(store, device, "seq_regression")
            if last is not None and at - last < self.REGRESSION_ALERT_S:
                continue
            text = (
                f"{device} sent event {mine[0].seq} again with other content: its count went"
                " back. Its events are kept; check the kiosk."
            )
            alert = Alert("seq_regression", "critical", store, None, device, None, text, at)
            self.engine.raise_alert(storage, alert)

    def write(self, batch: list[Raw]) -> Reply:
        events: list[EventRow] = []
        dead: list[DeadLetter] = []
        devices: list[DeviceStatus] = []
        for raw in batch:
            topic, payload, arrived = raw[0], raw[1], raw[2]
            if topic == BROKER_LOG:  # the broker's notices: kiosks whose connection it refused
                line = payload.decode("utf-8", "replace")
                refused = self.broker_log.read(line, arrived)
                devices += [
                    DeviceStatus(s, d, {"state": REFUSED}, arrived, False) for s, d in refused
                ]
                continue
            if any(raw[3:]):
                why = "published retained on a channel that is not: the broker's copy was cleared"
                dead.append(DeadLetter(topic, payload, RULE_RETAINED, "", why, arrived))
            try:
                item = classify(self.contract, topic, payload, arrived, self.stores)
            except Exception as exc:  # a defect met by one message: set it aside, go on
                log.exception("kiosk-host: cannot classify a message on %s", topic)
                item = DeadLetter(topic, payload, RULE_HOST, "", f"not taken in: {exc!r}", arrived)
            if isinstance(item, EventRow):
                events.append(item)
            elif isinstance(item, DeadLetter):
                dead.append(item)
            elif isinstance(item, DeviceStatus):
                devices.append(item)
        transactions = 1
        try:
            # Ratings first, then the other events, each applied to the cases as it is stored
            # (`Engine.rated`, `Engine.apply`): whatever order a kiosk's events come in, the
            # cases come out as if they had come in order (docs/recovery.md, "Order of arrival").
            result = self.storage.write_batch(
                events, dead, devices, apply=self._held(events, self.engine.apply),
                regressed=self._regressed, rated=self._held(events, self.engine.rated),
            )  # fmt: skip
        except Exception as exc:
            self._machine(exc)
            # One row the database refuses must not cost the others: store them one by one
            result = self._one_by_one(events, dead, devices)
            transactions += len(events) + len(devices) + 1
        self._due(result)
        self.dirty.update(e.store for e in events)
        self.rated.update(e.store for e in events if e.kind == "rating")
        rated = {e.store for e in events if e.kind == "rating"}
        try:  # committed already: a failure here only delays the leader's views of these stores
            self.leader.stored({e.store for e in events}, rated, transactions)
        except Exception:
            log.exception("kiosk-host: the group could not be told what was stored")
        return Reply(result.events, result.duplicates, result.dead_letters)

    def _leading(self) -> bool:
        """Whether this aggregator leads now; a failure to find out is logged and counts as
        following (the next tick asks again), never a reason to stop storing."""
        try:
            return self.leader.leading()
        except Exception:
            log.exception("kiosk-host: leadership could not be checked; following this tick")
            return False

    def _held(self, events: list[EventRow], step: Callable[[Store, T], list[DeadLetter]]
              ) -> Callable[[Store, T], list[DeadLetter]]:  # fmt: skip
        """`step` of the engine, run once the batch's stores are held against the group's
        other members (`Store.hold_stores`: the first step of a transaction takes them)."""
        held: list[bool] = []

        def run(storage: Store, arg: T) -> list[DeadLetter]:
            if not held:
                storage.hold_stores({e.store for e in events})
                held.append(True)
            return step(storage, arg)

        return run

    def _machine(self, exc: BaseException) -> None:
        """Raise Stop when the database cannot be written for a reason of the machine's."""
        said = self.storage.failure(exc)
        if said is not None:
            raise Stop(said) from exc

    def _one_by_one(
        self, events: list[EventRow], dead: list[DeadLetter], devices: list[DeviceStatus]
    ) -> Stored:
        new = dup = letters = 0
        single: list[tuple[list[EventRow], list[DeviceStatus]]] = [([e], []) for e in events]
        single += [([], [d]) for d in devices]
        for evs, devs in single:
            try:
                r = self.storage.write_batch(
                    evs, (), devs, apply=self._held(evs, self.engine.apply),
                    regressed=self._regressed, rated=self._held(evs, self.engine.rated),
                )  # fmt: skip
                self._due(r)
            except Exception as exc:
                self._machine(exc)
                log.exception("kiosk-host: cannot store a message; set aside")
                s = (evs or devs)[0]
                kind = "event" if evs else ("telemetry" if devs[0].telemetry else "status")
                topic = topics.topic(kind, store=s.store, device=s.device)
                raw = evs[0].raw.encode() if evs else json.dumps(devs[0].payload).encode()
                why = f"not stored: {exc!r}"
                dead.append(DeadLetter(topic, raw, RULE_HOST, "", why, s.arrived))
                continue
            new, dup, letters = new + r.events, dup + r.duplicates, letters + r.dead_letters
        r = self.storage.write_batch((), dead)
        return Stored(new, dup, letters + r.dead_letters)

    def _guarded(self, what: str, step: Callable[[], None]) -> None:
        """Run one step of the tick; a failure is logged and the step skipped, never a reason
        to stop storing what kiosks send (a bad row breaks a view, not ingest)."""
        try:
            step()
        except Exception as exc:
            self._machine(exc)
            log.exception("kiosk-host: %s failed; skipped this time", what)

    def tick(self, now: int) -> list[Publication]:
        """Deadlines and stream alerts; the alerts raised and, at most once a tick per store,
        its retained views after a change."""
        if self.leader.outside(self.storage.outside_changes()):
            # a case fixed from the CLI: its store's views change
            self.dirty.update(self.storage.case_stores())
        stores, rated_elsewhere = self.leader.heard()  # stored by the group's other members
        self.dirty |= stores
        self.rated |= rated_elsewhere
        if self.leader.took_over():  # what the last leader sent is unknown: every store once
            everything = set(self.storage.store_ids())
            self.dirty |= everything
            self.rated |= everything
            self._took_over_at = now
        self._guarded(
            "the cases' deadlines", lambda: self.dirty.update(self.engine.tick(self.storage))
        )
        if now >= self._kiosks_due:
            self._kiosks_due = now + self.KIOSKS_S
            self._guarded(
                "the kiosks' alerts",
                lambda: self.engine.kiosk_alerts(self.storage, now, self._listening_since),
            )
        rated, self.rated = self.rated, set()
        self._guarded("the stream alerts", lambda: self.engine.stream_alerts(self.storage, rated))
        out: list[Publication] = []
        try:
            alerts = self.storage.unpublished_alerts()
            if alerts:  # handed over to be published: the receiver publishes at QoS 1
                with self.storage.transaction():
                    self.storage.mark_published([i for i, _, _ in alerts])
        except Exception as exc:  # kept unpublished: the next tick tries again
            self._machine(exc)
            log.exception("kiosk-host: the alerts could not be handed over; next tick")
            alerts = []
        for _, store, payload in alerts:
            self.dirty.add(store)
            out.append((topics.topic("alerts", store=store), payload, False))
        if now <= self._took_over_at:
            # The last leader may have sent views in this very second: a view is known by its
            # store and `ts`, so this one's wait for the next (the stores stay dirty till then).
            return out
        for store in sorted(self.dirty):
            for name in ("cases", "summary", "recognition"):
                try:
                    text = json.dumps(self._view(name, store, now))
                except Exception as exc:
                    self._machine(exc)
                    log.exception("kiosk-host: the %s view of %s failed; not sent", name, store)
                    continue
                out.append((topics.topic(name, store=store), text.encode(), True))
        self.dirty.clear()
        return out

    def _view(self, name: str, store: str, now: int) -> dict[str, Any]:
        cfg = self.stores.get(store)
        if name == "cases":
            return case_list(self.storage, store, now)
        if name == "summary":
            return summary(self.storage, cfg, store, now)
        return recognition(self.storage, cfg, store, now)


def serve(conn: Connection) -> None:
    """The writer process: opens the database it is sent, then answers each batch on `conn`
    until it is told to stop (None) or the receiver is gone."""
    db, stores = conn.recv()
    try:
        storage = open_storage(str(db))
    except StorageError as why:  # the receiver says why, rather than that the pipe closed
        conn.send(Failed(str(why)))
        return
    writer = Writer(storage, stores, leader_for(str(db)))
    try:
        conn.send("ready")
        while True:
            batch = conn.recv()
            if batch is None:
                break
            try:
                reply: Reply | Failed = writer.handle(batch)
            except Stop as why:
                reply = Failed(str(why))
            except sqlite3.Error as why:
                reply = Failed(f"--db {db}: {why}")
            conn.send(reply)
            if isinstance(reply, Failed):
                break
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the receiver died: what is committed stays, the rest comes again from the broker
    finally:
        writer.leader.close()
        storage.close()


@dataclass(frozen=True)
class Failed:
    """The writer process's last answer: it cannot go on, and why (the operator's line)."""

    reason: str


if __name__ == "__main__":  # started by `ingest` with its end of a socket pair
    # through the module's own name, so that what is sent back unpickles as
    # kiosk_host.aggregator.writer's
    import signal

    from kiosk_host.aggregator.writer import serve as serve_receiver

    # Ctrl-C, and a service manager's SIGTERM, reach the whole process group: the receiver
    # tells this process when to stop, after the last batch is stored (or it closes the pipe).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve_receiver(Connection(int(sys.argv[1])))
