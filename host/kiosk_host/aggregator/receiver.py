"""Durable ingest: kiosk messages from the broker into storage, acknowledged only once stored.

paho-mqtt receives on a persistent session with manual acknowledgement, and a courier thread
hands the messages in batches (bounded by count and by a few milliseconds) to the store
process (`writer`), which stores each batch in one transaction. Only after its answer are the
batch's messages acknowledged: a crash before the commit leaves them unacknowledged, so the
broker delivers them again, and the storage keeps each event once. While the writer process
works on one batch, the receiver takes in and acknowledges the next: the two run on two cores.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import unquote, urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from kiosk_host import __version__
from kiosk_host.aggregator import metrics, writer
from kiosk_host.aggregator.writer import KIOSK_CHANNELS, classify
from kiosk_host.errors import UserError
from kiosk_host.rules.health import BROKER_LOG
from kiosk_host.rules.stores import Stores
from kiosk_host.storage import shown
from kiosk_host.wire import topics
from kiosk_host.wire.broker_url import client_options
from kiosk_host.wire.contract import Contract

__all__ = ["HOST_STATUS", "KIOSK_CHANNELS", "Ingest", "IngestError", "classify"]
HOST_STATUS = topics.topic("hostStatus")
DEFAULT_CLIENT_ID = "kiosk-host"  # on a broker without accounts (the demo's, tests')
# The persistent session outlives a disconnect, as a 3.1.1 clean_session=false one does; the
# broker still ends it after its persistent_client_expiration.
SESSION_EXPIRY_S = 0xFFFFFFFF
log = logging.getLogger(__name__)

# topic, payload, message id, QoS, arrival (Unix seconds), arrival (monotonic)
Inbound = tuple[str, bytes, int, int, float, float]


class IngestError(RuntimeError):
    """The writer process stopped: nothing more can be stored or acknowledged."""


class ClientIdError(UserError, ValueError):
    """A client id the broker would not keep: it names each client after its account."""


def session_id(broker: str, client_id: str | None = None) -> str:
    """The aggregator's client id, the name of its persistent session: its account's user name
    (the broker replaces any other with it: use_username_as_clientid), or `client_id` on a
    broker without accounts."""
    user = unquote(urlparse(broker).username or "")
    if client_id is None:
        return user or DEFAULT_CLIENT_ID
    if user and client_id != user:
        raise ClientIdError(
            f"--client-id {client_id}: the broker names each client after its account, so this "
            f"session would be {user}'s; leave --client-id out, or run this aggregator on an "
            f"account of its own (`kiosk-host provision --aggregator --name NAME`)"
        )
    return client_id


def strayed_retained(contract: Contract) -> frozenset[str]:
    """The kiosk channels the contract does not retain (event, telemetry): a retained message
    there is a kiosk's mistake or an attack, and would be handed to every new subscriber."""
    return frozenset(c.key for c in contract.channels if c.key in KIOSK_CHANNELS and not c.retained)


class IngestRefused(IngestError):
    """The writer process stopped for a cause the operator can fix, and said which (a full
    disk, a read-only or damaged database)."""


class Ingest:
    """The aggregator's ingest; `start()` connects and returns, `stop()` ends it."""

    BATCH_MAX = 500  # messages in one transaction, at most
    BATCH_MS = 5  # how long a batch waits for more messages before it is committed
    IDLE_S = 0.1  # with nothing received, the writer process is still asked to tick this often
    START_S = 60.0  # the writer process opens and migrates the database within this

    def __init__(
        self,
        broker: str,
        db: Path | str,  # a SQLite file, or a PostgreSQL URL
        client_id: str | None = None,
        stores: Stores | None = None,
        ca: str | None = None,
        share: str | None = None,  # a group of aggregators sharing the stream (`--share`)
    ) -> None:
        self.db = db
        # With a group, the broker hands each message of the stream to one of its members.
        everything = topics.tree().everything
        self.stream = f"$share/{share}/{everything}" if share else everything
        self.client_id = session_id(broker, client_id)
        self.cleared = 0  # retained messages found on a kiosk channel that is not retained
        self._contract = Contract.load()
        self._not_retained = strayed_retained(self._contract)
        self._strays: set[int] = set()  # id() of those messages, until handed to the writer
        self.stores = stores or writer.NO_STORES
        self.stored = self.duplicates = self.dead = 0
        self.on_committed: Callable[[list[tuple[str, bytes]]], None] | None = None
        self.stopped = threading.Event()  # set when ingest ends, by stop() or by a failure
        self.error: str | None = None
        self.fixable = False  # the error is the operator's to fix (IngestRefused)
        self._inbox: deque[Inbound] = deque()
        self._wake = threading.Event()
        self._stopping = False
        # The writer process is started afresh rather than forked from this one, whose paho
        # threads a fork would copy mid-step; its end of the socket closes when it dies.
        mine, self._theirs = socket.socketpair()
        self._pipe = Connection(mine.detach())
        self._writer: subprocess.Popen[bytes] | None = None
        self._courier = threading.Thread(target=self._carry, name="ingest-courier", daemon=True)
        # MQTT 5 for its retain-as-published subscription option: the aggregator sees which
        # messages were published retained, and clears those on channels not retained.
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        c.manual_ack_set(True)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.will_set(HOST_STATUS, self._status("offline", None), qos=1, retain=True)
        self.host, self.port = client_options(c, broker, ca)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 5)
        self.client = c

    def _status(self, state: str, ts: int | None) -> bytes:
        return json.dumps(
            {"v": 1, "state": state, "host": self.client_id, "ts": ts, "version": __version__}
        ).encode()

    def start(self) -> None:
        """Start the writer process, wait until its database is open, then connect."""
        with self._theirs as theirs:
            self._writer = subprocess.Popen(
                [sys.executable, "-m", "kiosk_host.aggregator.writer", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
            )
        answer: object = None
        try:
            self._pipe.send((self.db, self.stores))
            answer = self._pipe.recv() if self._pipe.poll(self.START_S) else None
        except (EOFError, OSError):
            pass
        if answer != "ready":
            self._writer.kill()
            if isinstance(answer, writer.Failed):
                raise IngestRefused(answer.reason)
            raise IngestError(
                f"ingest stopped: the writer process did not open {shown(str(self.db))}"
            )
        self._courier.start()
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = SESSION_EXPIRY_S
        # clean_start False on every connect, reconnects included: the session is persistent
        self.client.connect(
            self.host, self.port, keepalive=30, clean_start=False, properties=session
        )
        self.client.loop_start()

    def stop(self) -> None:
        """Publish offline, store and acknowledge what was received, and end both processes."""
        if self.client.is_connected():
            self.client.publish(HOST_STATUS, self._status("offline", int(time.time())), 1, True)
        self._stopping = True
        self._wake.set()
        if self._courier.is_alive():
            self._courier.join(30)
        self.client.disconnect()
        self.client.loop_stop()
        if self._writer is not None:
            try:
                self._writer.wait(10)
            except subprocess.TimeoutExpired:
                self._writer.kill()
                self._writer.wait()
        self.stopped.set()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, rc: object,
                    props: object = None) -> None:  # fmt: skip
        everything = SubscribeOptions(qos=1, retainAsPublished=True)
        client.subscribe(self.stream, options=everything)
        # The broker's notices, where it logs whose connection it refused (`log_dest topic`).
        client.subscribe(BROKER_LOG, options=SubscribeOptions(qos=1))
        client.publish(HOST_STATUS, self._status("online", int(time.time())), 1, True)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        stray = self._stray(client, msg) if msg.retain else False
        if stray is None:
            return
        inbound = (msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time(), time.monotonic())
        if stray:
            self._strays.add(id(inbound))
        self._inbox.append(inbound)
        if not self._wake.is_set():
            self._wake.set()

    def _stray(self, client: paho.Client, msg: paho.MQTTMessage) -> bool | None:
        """Whether a retained message is on a kiosk channel the contract does not retain. Such
        a message is cleared at once, with an empty retained message, so that no new
        subscriber is handed it; it is stored as any other, and a dead letter keeps it on
        record (True). None: it is that clearing coming back, acknowledged, nothing to store."""
        found = topics.parse(msg.topic)
        if found is None or found[0] not in self._not_retained:
            return False
        if not msg.payload:
            client.ack(msg.mid, msg.qos)
            return None
        client.publish(msg.topic, b"", qos=1, retain=True)
        self.cleared += 1
        log.warning(
            "kiosk-host: %s was published retained, which its channel is not; cleared",
            msg.topic,
        )
        return True

    # -- the courier: batches to the writer process, acknowledgements back to the broker ------

    def _carry(self) -> None:
        try:
            self._relay()
            self._pipe.send(None)
        except IngestRefused as exc:  # the writer process said why it cannot go on
            self.error = f"ingest stopped: {exc}"
            self.fixable = True
            log.error("kiosk-host: %s; unacknowledged messages stay with the broker", self.error)
            self.stopped.set()
        except Exception as exc:  # whatever it was, nothing more is stored: say so and end
            self.error = f"ingest stopped: {exc!r}"
            log.error("kiosk-host: %s; unacknowledged messages stay with the broker", self.error)
            self.stopped.set()

    def _relay(self) -> None:
        """One batch in the writer process at a time; the next is sent as soon as the answer
        comes, before this one is acknowledged, so the writer process seldom waits."""
        batch = self._gather()
        self._send(batch)
        while True:
            reply = self._pipe.recv()
            if isinstance(reply, writer.Failed):
                raise IngestRefused(reply.reason)
            if not isinstance(reply, writer.Reply):
                raise IngestError(f"unexpected answer {reply!r}")
            done = batch
            batch = self._take() if self._ready() else []
            if batch:
                self._send(batch)
            self._settle(done, reply)
            if not batch:
                if self._stopping and not self._inbox:
                    return
                batch = self._gather()
                self._send(batch)

    def _ready(self) -> bool:
        inbox = self._inbox
        if len(inbox) >= self.BATCH_MAX:
            return True
        return bool(inbox) and time.monotonic() - inbox[0][5] >= self.BATCH_MS / 1000

    def _gather(self) -> list[Inbound]:
        """The next batch: waits for a first message (at most IDLE_S), then up to BATCH_MS
        for more; an empty batch asks the writer process only to tick."""
        if not self._inbox:
            self._wake.clear()
            if not self._inbox and not self._stopping:
                self._wake.wait(self.IDLE_S)
        if self._inbox and len(self._inbox) < self.BATCH_MAX:
            wait = self._inbox[0][5] + self.BATCH_MS / 1000 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        return self._take()

    def _take(self) -> list[Inbound]:
        inbox = self._inbox
        return [inbox.popleft() for _ in range(min(len(inbox), self.BATCH_MAX))]

    def _send(self, batch: list[Inbound]) -> None:
        if not self._strays:
            self._pipe.send([(t, payload, int(wall)) for t, payload, _, _, wall, _ in batch])
            return
        raws: list[writer.Raw] = []
        for m in batch:
            if id(m) in self._strays:  # published retained where the contract does not retain
                self._strays.discard(id(m))
                raws.append((m[0], m[1], int(m[4]), True))
            else:
                raws.append((m[0], m[1], int(m[4])))
        self._pipe.send(raws)

    def _settle(self, batch: list[Inbound], reply: writer.Reply) -> None:
        """The batch is committed: acknowledge it, publish what the writer process asks for."""
        for _, _, mid, qos, _, _ in batch:
            if qos:
                self.client.ack(mid, qos)
        for topic, payload, retain in reply.publish:
            self.client.publish(topic, payload, qos=1, retain=retain)
        self.stored += reply.events
        self.duplicates += reply.duplicates
        self.dead += reply.dead
        if batch:
            waited = time.monotonic() - batch[0][5]
            metrics.record_commit(len(batch), reply.events, reply.duplicates, reply.dead, waited)
            if self.on_committed is not None:
                self.on_committed([(topic, payload) for topic, payload, *_ in batch])
