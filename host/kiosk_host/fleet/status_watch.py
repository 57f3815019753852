"""The kiosk's status on the broker, watched across its reset until it says it is online."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from contextlib import suppress
from queue import Empty, Queue
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.wire.broker_url import client_options


class StatusWatch:
    """Subscribed to the kiosk's status before its reset, so that the next one is live.

    `problem` says why no status can be seen (no broker reachable from here, an account it
    refuses); the deployment then goes on, but cannot confirm the kiosk online."""

    def __init__(self, url: str, topic: str, ca: str | None = None) -> None:
        self.messages: Queue[tuple[dict[str, Any], bool]] = Queue()
        self.problem: str | None = None
        connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"kiosk-host-deploy-{uuid.uuid4()}"
        )
        host, port = client_options(self.client, url, ca)
        self.where = f"{host}:{port}"

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                self.problem = (
                    f"the broker at {self.where} refused us ({reason}): give --broker-dir "
                    "the folder whose fleet.json holds the fleet tools' account, or pass "
                    "--broker mqtt://USER@HOST:PORT (or set KIOSK_BROKER; the password in "
                    "--password-file or $KIOSK_BROKER_PASSWORD) with an account "
                    f"that may read {topic}"
                )
            else:
                client.subscribe(topic, qos=1)
            connected.set()

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            with suppress(ValueError):
                payload = json.loads(msg.payload)
                if isinstance(payload, dict):
                    self.messages.put((payload, bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        try:
            socket.create_connection((host, port), 3).close()
            self.client.connect(host, port, keepalive=30)
        except OSError as why:
            self.problem = f"no broker reachable at {self.where} from here ({why.strerror or why})"
            return
        self.client.loop_start()
        if not connected.wait(5):
            self.problem = f"the broker at {self.where} did not answer"

    def wait_online(self, version: str, timeout: float) -> dict[str, Any] | None:
        """The first live status after now that says online with `version`, or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                payload, retained = self.messages.get(timeout=left)
            except Empty:
                break
            if not retained and payload.get("state") == "online" and payload.get("fw") == version:
                return payload
        return None

    def close(self) -> None:
        with suppress(Exception):
            self.client.loop_stop()
            self.client.disconnect()
