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

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host import __version__
from kiosk_host.aggregator import metrics, writer
from kiosk_host.aggregator.writer import KIOSK_CHANNELS, classify
from kiosk_host.rules.stores import Stores
from kiosk_host.wire import topics
from kiosk_host.wire.broker_url import client_options

__all__ = ["HOST_STATUS", "KIOSK_CHANNELS", "Ingest", "IngestError", "classify"]
HOST_STATUS = topics.topic("hostStatus")
log = logging.getLogger(__name__)

# topic, payload, message id, QoS, arrival (Unix seconds), arrival (monotonic)
Inbound = tuple[str, bytes, int, int, float, float]


class IngestError(RuntimeError):
    """The writer process stopped: nothing more can be stored or acknowledged."""


class Ingest:
    """The aggregator's ingest; `start()` connects and returns, `stop()` ends it."""

    BATCH_MAX = 500  # messages in one transaction, at most
    BATCH_MS = 5  # how long a batch waits for more messages before it is committed
    IDLE_S = 0.1  # with nothing received, the writer process is still asked to tick this often
    START_S = 60.0  # the writer process opens and migrates the database within this

    def __init__(
        self,
        broker: str,
        db: Path,
        client_id: str = "kiosk-host",
        stores: Stores | None = None,
        ca: str | None = None,
    ) -> None:
        self.db = db
        self.client_id = client_id
        self.stores = stores or writer.NO_STORES
        self.stored = self.duplicates = self.dead = 0
        self.on_committed: Callable[[list[tuple[str, bytes]]], None] | None = None
        self.stopped = threading.Event()  # set when ingest ends, by stop() or by a failure
        self.error: str | None = None
        self._inbox: deque[Inbound] = deque()
        self._wake = threading.Event()
        self._stopping = False
        # The writer process is started afresh rather than forked from this one, whose paho
        # threads a fork would copy mid-step; its end of the socket closes when it dies.
        mine, self._theirs = socket.socketpair()
        self._pipe = Connection(mine.detach())
        self._writer: subprocess.Popen[bytes] | None = None
        self._courier = threading.Thread(target=self._carry, name="ingest-courier", daemon=True)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
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
        try:
            self._pipe.send((self.db, self.stores))
            ready = self._pipe.poll(self.START_S) and self._pipe.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._writer.kill()
            raise IngestError(f"ingest stopped: the writer process did not open {self.db}")
        self._courier.start()
        self.client.connect(self.host, self.port, keepalive=30)
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
        client.subscribe(topics.tree().everything, qos=1)
        client.publish(HOST_STATUS, self._status("online", int(time.time())), 1, True)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self._inbox.append(
            (msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time(), time.monotonic())
        )
        if not self._wake.is_set():
            self._wake.set()

    # -- the courier: batches to the writer process, acknowledgements back to the broker ------

    def _carry(self) -> None:
        try:
            self._relay()
            self._pipe.send(None)
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
        self._pipe.send([(topic, payload, int(wall)) for topic, payload, _, _, wall, _ in batch])

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
