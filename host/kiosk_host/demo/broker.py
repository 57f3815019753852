"""An embedded MQTT broker for the demo: amqtt in a thread, its state kept in a file.

amqtt 0.12.1, as it comes, loses or garbles the product's messages; each fix is written here:

* AdmitEveryone: amqtt marks every client anonymous, then keeps no persistent session for
  an anonymous client: the aggregator's session would become a clean one;
* AckedHandler: amqtt drops an unacknowledged QoS 1 message after 5 s or a disconnect; the
  aggregator acknowledges a message only once it has stored it;
* KioskBroker: amqtt sends every connecting client the retained messages of other clients'
  subscriptions, and sends a message kept for a client while it was away flagged retained;
* KeepSessions: amqtt saves nothing without sqlalchemy and aiosqlite; a JSON file needs
  neither.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import amqtt.broker  # type: ignore[import-untyped]
from amqtt.mqtt.protocol.broker_handler import (  # type: ignore[import-untyped]
    BrokerProtocolHandler,
)
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin  # type: ignore[import-untyped]
from amqtt.session import OUTGOING  # type: ignore[import-untyped]


class AdmitEveryone(BaseAuthPlugin):  # type: ignore[misc]
    """Lets every client in without marking it anonymous. amqtt's own anonymous plugin marks
    every client so, and amqtt keeps no session and queues no message for an anonymous
    client, which turns the aggregator's persistent session into a clean one."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


class KeepSessions(BasePlugin):  # type: ignore[misc]
    """Keeps the broker's retained messages and persistent sessions (their subscriptions and
    the messages waiting for them) in a file: saved every `autosave_s` and at shutdown,
    loaded at start. amqtt keeps them only in memory."""

    @dataclass
    class Config:
        path: str = "broker.json"
        autosave_s: float = 30.0

    async def on_broker_pre_start(self) -> None:
        self._saver: asyncio.Task[None] | None = None
        path = Path(self.config.path)
        try:
            await restore_broker(self.context, path)
        except (OSError, ValueError, KeyError, TypeError) as why:
            self.context.logger.warning(f"{path} not loaded ({why}); starting empty")
            with contextlib.suppress(OSError):
                path.replace(path.with_suffix(".unreadable"))

    async def on_broker_post_start(self) -> None:
        self._saver = asyncio.create_task(self._autosave())

    async def on_broker_pre_shutdown(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
        save_broker(self.context, Path(self.config.path))

    async def _autosave(self) -> None:
        while True:
            await asyncio.sleep(self.config.autosave_s)
            save_broker(self.context, Path(self.config.path))


class AckedHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's end of a client connection, except that an outgoing QoS 1 message stays in
    the client's session until its PUBACK, however long that takes. amqtt 0.12 drops it
    after 5 s without one, or when the connection goes, so a subscriber that acknowledges
    only once it has stored a message (the aggregator) would lose what it had received but
    not yet stored when it stopped. Kept, it is sent again (DUP) when the client returns."""

    async def _handle_qos1_message_flow(self, message: Any) -> None:
        if message.direction != OUTGOING:
            await super()._handle_qos1_message_flow(message)
            return
        packet_id = message.packet_id
        self.session.inflight_out[packet_id] = message
        packet = message.build_publish_packet(dup=message.publish_packet is not None)
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._puback_waiters[packet_id] = acked  # before sending: a PUBACK can come at once
        try:
            await self._send_packet(packet)
            message.publish_packet = packet
            message.puback_packet = await acked  # cancelled when the connection goes
        finally:
            self._puback_waiters.pop(packet_id, None)
        self.session.inflight_out.pop(packet_id, None)


_SUBSCRIBING: contextvars.ContextVar[bool] = contextvars.ContextVar("subscribing", default=False)


class KioskBroker(amqtt.broker.Broker):  # type: ignore[misc]
    """amqtt's broker with the ways of amqtt 0.12 that lose or garble the product's messages
    put right:

    * a client gets the retained messages of a topic when it subscribes to it; amqtt also
      sends every connecting client those of every other client's subscriptions, from a
      loop that fails ("dictionary changed size") when a subscription comes or goes then;
    * a message kept for a client while it was away reaches it as it was sent, not flagged
      as a retained one;
    * at shutdown, what was received is passed on (or kept for its subscribers) first:
      amqtt drops the messages it has not passed on yet.
    """

    async def shutdown(self) -> None:
        settled = 0
        for _ in range(50):  # 5 s at most
            await asyncio.sleep(0.1)
            settled = settled + 1 if self._settled() else 0
            if settled == 2:
                break
        await super().shutdown()

    def _settled(self) -> bool:
        """Nothing received is still on its way to its subscribers."""
        return (
            self._broadcast_queue.empty()
            and all(t.done() for t in self._tasks_queue)
            and all(s.delivered_message_queue.empty() for s, _ in self._sessions.values())
        )

    async def _handle_subscription(self, session: Any, handler: Any, waiter: Any) -> None:
        token = _SUBSCRIBING.set(True)
        try:
            await super()._handle_subscription(session, handler, waiter)
        finally:
            _SUBSCRIBING.reset(token)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        if _SUBSCRIBING.get():  # not at connect, for everybody's subscriptions
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _publish_session_retained_messages(self, session: Any) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        while not session.retained_messages.empty():
            m = session.retained_messages.get_nowait()
            sends.append(asyncio.ensure_future(handler.mqtt_publish(m.topic, m.data, m.qos, False)))
        if sends:
            await asyncio.wait(sends)


def _message(m: Any) -> dict[str, Any]:
    return {"topic": m.topic, "data": base64.b64encode(bytes(m.data)).decode(), "qos": m.qos or 0}


def _queued(queue: asyncio.Queue[Any]) -> list[Any]:
    """What a queue holds, left in place."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    for item in items:
        queue.put_nowait(item)
    return items


def save_broker(context: Any, path: Path) -> None:
    """Write the broker's retained messages and persistent sessions to `path` (atomically)."""
    subscriptions: dict[str, list[tuple[str, int]]] = {}
    for topic_filter, entries in context.subscriptions.items():
        for session, qos in entries:
            subscriptions.setdefault(session.client_id, []).append((topic_filter, qos))
    sessions = []
    for session in context.sessions:
        if session.clean_session or session.is_anonymous or not session.client_id:
            continue
        waiting = [*session.inflight_out.values(), *_queued(session.retained_messages)]
        sessions.append(
            {
                "client_id": session.client_id,
                "subscriptions": subscriptions.get(session.client_id, []),
                "waiting": [_message(m) for m in waiting],
            }
        )
    state = {
        "v": 1,
        "retained": [_message(m) for m in context.retained_messages.values()],
        "sessions": sessions,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    new = path.with_suffix(".new")
    with new.open("w", encoding="utf-8") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    new.replace(path)


async def restore_broker(context: Any, path: Path) -> None:
    """Load what `save_broker` wrote: retained messages, and every persistent session with
    its subscriptions and the messages waiting for it (sent when its client connects)."""
    if not path.exists():
        return
    state = json.loads(path.read_text(encoding="utf-8"))
    Retained = amqtt.broker.RetainedApplicationMessage
    for m in state["retained"]:
        data = base64.b64decode(m["data"])
        context.retained_messages[m["topic"]] = Retained(None, m["topic"], data, m["qos"])
    for s in state["sessions"]:
        client_id = s["client_id"]
        await context.add_subscription(client_id, None, None)
        for topic_filter, qos in s["subscriptions"]:
            await context.add_subscription(client_id, topic_filter, qos)
        session = context.get_session(client_id)
        session.clean_session = False
        for m in s["waiting"]:
            data = base64.b64decode(m["data"])
            session.retained_messages.put_nowait(Retained(None, m["topic"], data, m["qos"]))


class EmbeddedBroker:
    """amqtt on 127.0.0.1:`port`, in a thread of the demo's process, its retained messages
    and persistent sessions kept in the file `state`, its log in `log`."""

    def __init__(self, port: int, state: Path, log: Path) -> None:
        self.port = port
        self.state = state
        self.log = log
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="broker", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                f"{__name__}.AdmitEveryone": {},
                f"{__name__}.KeepSessions": {"path": str(self.state)},
            },
        }

    def start(self, timeout: float = 20.0) -> None:
        amqtt.broker.BrokerProtocolHandler = AckedHandler  # the handler every connection gets
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        for name, level in (("amqtt", logging.INFO), ("transitions", logging.WARNING)):
            logger = logging.getLogger(name)
            logger.handlers = [handler]
            logger.setLevel(level)
            logger.propagate = False
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the broker did not start in {timeout:.0f} s; see {self.log}")
        if self._error is not None:
            raise RuntimeError(f"the broker did not start: {self._error}")

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down, saving its state first."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            broker = KioskBroker(self.config())
            await broker.start()
        except Exception as why:  # a port in use, a state file that cannot be written, ...
            self._error = why
            self._ready.set()
            return
        self._ready.set()
        await self._stopping.wait()
        await broker.shutdown()
