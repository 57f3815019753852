"""Fleet operations over MQTT: desired configs and commands to kiosks, checked by the contract.

Every message is checked against the wire contract before it is published, so a config or a
command the kiosks would refuse never leaves the host; the refusal names the rule it breaks.
A config change starts from the kiosk's current desired config: the retained one on the
broker, else the one provisioning wrote, so that the settings not named are kept.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk_host.errors import UserError
from kiosk_host.fleet.provision import DEFAULT_DEVICES_DIR, FLEET, is_aggregator_account
from kiosk_host.wire import topics
from kiosk_host.wire.broker_url import client_options, public_url
from kiosk_host.wire.contract import Contract, Rejection
from kiosk_host.wire.identifiers import check_identifier

TIMEOUT_S = 10.0
# Subscribed to after the topics whose retained messages are wanted: its SUBACK comes after
# them, so it marks the end of the retained messages. Nothing is ever published there.
_BARRIER = topics.tree().root + "/_host/none"


class FleetError(UserError, ValueError):
    """A fleet operation that could not be done; the message says what to fix."""


def check_tool_account(url: str) -> None:
    """Refuse an aggregator's account for a tool: the broker names each client after its
    account, so the tool would take over the aggregator's session (and a clean session, as a
    tool's is, wipes what the broker holds for the aggregator)."""
    user = unquote(urlparse(url).username or "")
    if is_aggregator_account(user):
        raise FleetError(
            f"--broker logs in as {user}, an aggregator's account: the broker would give this "
            f"tool the aggregator's session and cut the aggregator off. Use the fleet account, "
            f"{FLEET} (its password is in var/broker/fleet.json; `kiosk-host provision --fleet` "
            f"makes it)"
        )


class Broker:
    """A short connection to the broker for one fleet command; close it (or use `with`).

    The broker allows one connection per account: a second tool on the same account, at the
    same time, cuts this one off. It does not reconnect then (two tools would cut each other
    off in turn): what it was doing fails with that reason, and the command can be run again
    (a config push and a command are idempotent: the same retained config, a command's id)."""

    def __init__(self, url: str, ca: str | None = None, timeout: float = TIMEOUT_S) -> None:
        parts = urlparse(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise FleetError(
                f"--broker {public_url(url)!r} is not a broker address: use "
                "mqtt://USER@HOST:PORT (or mqtts:// with --ca), the password in "
                "--password-file or $KIOSK_BROKER_PASSWORD"
            )
        check_tool_account(url)
        self.url = public_url(url)
        self.timeout = timeout
        # The id counts only on a broker without accounts; with accounts, the broker names the
        # client after its account.
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{FLEET}-{uuid.uuid4()}",
            reconnect_on_failure=False,
        )
        host, port = client_options(c, url, ca)
        self._answered = threading.Event()
        self._refused: str | None = None
        self._lock = threading.Lock()
        self._retained: dict[str, bytes] = {}
        self._subacks: set[int] = set()
        self._closing = False
        self._lost: str | None = None  # why the broker closed the connection, if it did
        self._listening: list[str] = []  # filters whose every message is kept (listen())
        self._heard: list[tuple[str, bytes]] = []
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c
        try:
            c.connect(host, port)
        except (OSError, ValueError) as why:
            raise FleetError(f"no connection to the broker at {self.url}: {why}") from None
        c.loop_start()
        if not self._answered.wait(timeout):
            self.close()
            raise FleetError(f"the broker at {self.url} did not answer in {timeout:.0f} s")
        if self._refused is not None:
            self.close()
            raise FleetError(
                f"the broker at {self.url} refused the connection: {self._refused}; check the "
                f"user name and password in --broker (the aggregator's are in "
                f"var/broker/aggregator.json)"
            )

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any = None) -> None:  # fmt: skip
        if rc.is_failure:
            self._refused = str(rc)
            client.disconnect()
        self._answered.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any = None) -> None:  # fmt: skip
        if not self._closing and self._answered.is_set() and self._refused is None:
            self._lost = str(rc)

    def _check_connected(self) -> None:
        if self._lost is not None:
            raise FleetError(
                f"the broker at {self.url} closed the connection ({self._lost}): another client "
                f"logged in with the same account, as a second fleet command at the same time "
                f"does (one connection per account); run them one after the other"
            )

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            if msg.retain:
                self._retained[msg.topic] = bytes(msg.payload)
            if any(paho.topic_matches_sub(f, msg.topic) for f in self._listening):
                self._heard.append((msg.topic, bytes(msg.payload)))

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, codes: Any,
                      props: Any = None) -> None:  # fmt: skip
        with self._lock:
            self._subacks.add(mid)

    def retained(self, filters: Sequence[str]) -> dict[str, bytes]:
        """The retained messages on `filters` now, by topic (cleared ones left out)."""
        with self._lock:
            self._retained.clear()
        self.client.subscribe([(f, 0) for f in filters])
        _, barrier = self.client.subscribe(_BARRIER, 0)
        deadline = time.monotonic() + self.timeout
        while True:
            with self._lock:
                if barrier in self._subacks:
                    found = {t: p for t, p in self._retained.items() if p}
                    break
            self._check_connected()
            if time.monotonic() > deadline:
                raise FleetError(f"the broker at {self.url} did not answer a subscription")
            time.sleep(0.005)
        self.client.unsubscribe([*filters, _BARRIER])
        return found

    def listen(self, filters: Sequence[str]) -> None:
        """Keep every message on `filters` from now on, retained or not, for `heard()`; returns
        once the broker has taken the subscription, so that nothing sent after is missed."""
        with self._lock:
            self._listening.extend(filters)
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        deadline = time.monotonic() + self.timeout
        while True:
            with self._lock:
                if mid in self._subacks:
                    return
            self._check_connected()
            if time.monotonic() > deadline:
                raise FleetError(f"the broker at {self.url} did not answer a subscription")
            time.sleep(0.005)

    def heard(self, start: int = 0) -> list[tuple[str, bytes]]:
        """The messages kept since `listen()`, from the `start`-th on, as (topic, payload)."""
        with self._lock:
            return self._heard[start:]

    def check_connected(self) -> None:
        """FleetError when the broker has closed this connection."""
        self._check_connected()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if info.is_published():
                    return
                info.wait_for_publish(0.05)
            except (RuntimeError, ValueError) as why:  # not sent: not connected, queue full
                self._check_connected()
                raise FleetError(f"could not publish to {self.url}: {why}") from None
            self._check_connected()  # cut off: no acknowledgement is coming
            if time.monotonic() > deadline:
                raise FleetError(f"the broker at {self.url} did not acknowledge {topic}")

    def close(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Broker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    topic: str
    payload: dict[str, Any]
    kiosk_state: str | None  # online / offline from the kiosk's retained status; None: unknown


def _checked(topic: str, payload: dict[str, Any], what: str) -> bytes:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    result = Contract.load().validate(topic, raw)
    if isinstance(result, Rejection):
        raise FleetError(f"{what} refused, nothing was published: {result}")
    return raw


def command(name: str, **fields: Any) -> dict[str, Any]:
    """A command payload with a fresh id: acted on once by the kiosk, however often delivered."""
    return {"v": 1, "cmd": name, "id": str(uuid.uuid4()), "ts": int(time.time()), **fields}


def send_command(broker: Broker, store: str, device: str, payload: dict[str, Any]) -> Sent:
    """Publish a command to one kiosk (QoS 1, not retained). A kiosk that is offline gets it
    when it comes back, from its persistent session."""
    check_identifier("--store", store)
    check_identifier("device", device)
    topic = topics.topic("cmd", store=store, device=device)
    raw = _checked(topic, payload, f"{payload.get('cmd')} for {store}/{device}")
    status = broker.retained([topics.topic("status", store=store, device=device)])
    broker.publish(topic, raw)
    return Sent(topic, payload, _state(next(iter(status.values()), None)))


def _state(raw: bytes | None) -> str | None:
    try:
        state = json.loads(raw)["state"] if raw else None
    except (ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state, str) else None


# -- desired config --------------------------------------------------------------------------


def parse_settings(pairs: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs as settings: VALUE as JSON when it is JSON (5, true, [...], "5"),
    else as text (How did we do?)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FleetError(
                f"--set {pair!r}: give KEY=VALUE, for example --set prompt='How was it?' or "
                f"--set scale=5"
            )
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    if not settings:
        raise FleetError("nothing to set: give at least one --set KEY=VALUE")
    return settings


@dataclass(frozen=True)
class Pushed:
    store: str
    device: str
    topic: str
    config: dict[str, Any]
    base: str  # where the settings not named came from: "broker" or the provisioned file


def push_config(
    broker: Broker,
    store: str,
    device: str | None,
    settings: dict[str, Any],
    devices_dir: Path = DEFAULT_DEVICES_DIR,
) -> list[Pushed]:
    """Change `settings` in the desired config of one kiosk, or of every kiosk of the store
    known to the broker or provisioned in `devices_dir`, and publish each retained. Every
    config is checked first; if any is refused, none is published."""
    check_identifier("--store", store)
    if device is not None:
        check_identifier("--device", device)
    mine = {"device": device} if device else {}
    retained = broker.retained(
        [topics.topic_filter(c, store=store, **mine) for c in ("config", "status")]
    )
    devices = {device} if device else _store_devices(store, retained, devices_dir)
    if not devices:
        raise FleetError(
            f"no kiosks known in store {store}: none has a status or config on the broker, and "
            f"none is provisioned in {devices_dir / store}; check --store, or give --device"
        )
    plans: list[Pushed] = []
    refusals: list[str] = []
    for d in sorted(devices):
        topic = topics.topic("config", store=store, device=d)
        base, source = _base_config(retained.get(topic), devices_dir / store / d / "config.json")
        if base is None:
            refusals.append(
                f"{store}/{d}: no config to start from (none retained on the broker, no "
                f"{devices_dir / store / d / 'config.json'}); provision the kiosk, or give "
                f"--devices-dir where it was provisioned"
            )
            continue
        config = {**base, **settings}
        result = Contract.load().validate(topic, json.dumps(config).encode())
        if isinstance(result, Rejection):
            refusals.append(f"{store}/{d}: {result}")
            continue
        plans.append(Pushed(store, d, topic, config, source))
    if refusals:
        raise FleetError("config refused, nothing was published:\n  " + "\n  ".join(refusals))
    for p in plans:
        broker.publish(p.topic, json.dumps(p.config, separators=(",", ":")).encode(), True)
    return plans


def _store_devices(store: str, retained: dict[str, bytes], devices_dir: Path) -> set[str]:
    found = {parsed[1]["device"] for t in retained if (parsed := topics.parse(t)) is not None}
    where = devices_dir / store
    if where.is_dir():
        found |= {p.parent.name for p in where.glob("*/config.json")}
    return found


def _base_config(retained: bytes | None, provisioned: Path) -> tuple[dict[str, Any] | None, str]:
    for raw, source in ((retained, "broker"), (_read(provisioned), str(provisioned))):
        if raw:
            try:
                config = json.loads(raw)
            except ValueError:
                continue
            if isinstance(config, dict):
                return config, source
    return None, ""


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


# -- the fleet view --------------------------------------------------------------------------
