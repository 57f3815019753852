"""A kiosk's own account against the broker run exactly as shipped, and the aggregator.

Whoever holds one kiosk's credentials (`store-12/till-1` here) can try any client id, a clean
or a persistent session, the retain flag, and any topic. The table below is every such
attempt with its expected outcome; the test after it runs the takeovers while the aggregator
is down and while it runs, under a stream of another kiosk's events, and checks that every
event the broker acknowledged is stored once and that nobody else was cut off.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiosk_host.fleet.commands import Broker, FleetError
from kiosk_host.storage.sqlite import Storage
from tests.broker import SHIPPED_CONF, Mosquitto, broker_config
from tests.fleet_rig import (
    Client,
    Serve,
    account_url,
    aggregator_url,
    broker_with,
    device,
    fleet_url,
    host_account,
    identity,
    kiosk_host,
    provision,
)
from tests.virtual_kiosks import wait_until
from tests.vm.mpvm import ROOT

STORE = "store-12"
MALLORY = "till-1"  # the kiosk whose account is in the wrong hands
VICTIM = "till-2"  # an honest kiosk of the same store
OTHER_STORE = "store-34"
EXAMPLES = ROOT / "mqtt_schemas" / "examples"
# The client ids a kiosk could know: the aggregator's, another kiosk's, the fleet tools', and
# another aggregator's (the watcher's here).
KNOWN_IDS = ("kiosk-host", f"{STORE}/{VICTIM}", "kiosk-fleet", "kiosk-host-watch")


def example(name: str, **fields: Any) -> bytes:
    """The first valid example payload of mqtt_schemas/examples/NAME.json, with `fields`."""
    payload = json.loads((EXAMPLES / f"{name}.json").read_text())["valid"][0]["payload"]
    return json.dumps({**payload, **fields}).encode()


def event(device_name: str, seq: int) -> bytes:
    return example("event-rating", store=STORE, device=device_name, seq=seq, station=device_name)


def topic(channel: str, device_name: str = MALLORY, store: str = STORE) -> str:
    return f"kiosk/v1/{store}/{device_name}/{channel}"


@dataclass
class Rig:
    broker: Mosquitto
    broker_dir: Path
    devices: Path
    db: Path
    serve: Serve | None = None
    mark: int = 0  # takeovers in the broker's log before the current test

    def mark_now(self) -> None:
        self.mark = len(self.takeovers(everything=True))

    def account(self, name: str) -> tuple[str, str]:
        """A kiosk's (by device, or store/device) or a host account's user and password."""
        if name in ("kiosk-host", "kiosk-fleet") or name.startswith("kiosk-host-"):
            file = {"kiosk-host": "aggregator.json", "kiosk-fleet": "fleet.json"}.get(
                name, f"aggregator-{name.removeprefix('kiosk-host-')}.json"
            )
            creds = json.loads((self.broker_dir / file).read_text())
            return creds["user"], creds["password"]
        store, _, dev = name.rpartition("/")
        ident = identity(self.devices / (store or STORE) / dev)
        return ident["user"], ident["password"]

    def client(self, account: str, client_id: str, clean: bool = True) -> Client:
        user, password = self.account(account)
        return Client(self.broker.port, client_id, user, password, clean=clean)

    def start_serve(self) -> None:
        self.serve = Serve(aggregator_url(self.broker_dir, self.broker.url), self.db)

    def stop_serve(self) -> str:
        said = self.serve.stop() if self.serve is not None else ""
        self.serve = None
        return said

    def stored(self, device_name: str) -> list[int]:
        if not self.db.exists():
            return []
        storage = Storage.open(str(self.db))
        try:
            seqs: list[int] = storage.seqs(STORE, device_name)
            return seqs
        finally:
            storage.close()

    def dead(self, t: str) -> list[Any]:
        """The dead letters on topic `t`."""
        storage = Storage.open(str(self.db))
        try:
            return [d for d in storage.dead_letters(1000) if d.topic == t]
        finally:
            storage.close()

    def takeovers(self, everything: bool = False) -> list[str]:
        """The client ids whose connection the broker closed for a newcomer with the same id,
        since mark_now()."""
        taken = r"Client (\S+) already connected, closing old connection"
        return re.findall(taken, self.broker.log)[0 if everything else self.mark :]

    def connections(self, client_id: str) -> int:
        return len(re.findall(rf"New client connected from \S+ as {re.escape(client_id)} ",
                              self.broker.log))  # fmt: skip


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("hostile")
    broker_dir, devices = tmp / "broker", tmp / "devices"
    broker = broker_with(tmp / "mosquitto", broker_dir)
    for store, name in ((STORE, MALLORY), (STORE, VICTIM), (OTHER_STORE, MALLORY)):
        provision(broker_dir, devices / store / name, store, name, broker.url)
    host_account(broker_dir, "watch")
    host_account(broker_dir, "probe")
    broker.start()
    r = Rig(broker, broker_dir, devices, tmp / "kiosk.db")
    try:
        yield r
    finally:
        r.stop_serve()
        broker.close()


@pytest.fixture(scope="module")
def watcher(rig: Rig) -> Iterator[Client]:
    """Another aggregator's account, reading the whole tree: one connection for the module."""
    watcher = rig.client("kiosk-host-watch", "watcher")
    assert watcher.subscribe("kiosk/#") == [1]
    try:
        yield watcher
    finally:
        watcher.close()


@pytest.fixture
def running(rig: Rig, watcher: Client) -> Client:
    """The aggregator running, subscribed (it said so to the watcher); the watcher."""
    if rig.serve is None:
        rig.start_serve()

    def online() -> bool:
        said = [json.loads(p) for p in watcher.on("kiosk/v1/_host/status") if p]
        return bool(said) and said[-1].get("state") == "online"

    wait_until(online, 30, "the aggregator")
    return watcher


def retained_now(rig: Rig, *topics: str) -> dict[str, bytes]:
    """What a new subscriber is handed on `topics`: the retained messages, non-empty ones, by
    topic (a fresh clean session of another aggregator's account; the SUBACK of a topic nobody
    publishes on, asked for last, comes after them)."""
    probe = rig.client("kiosk-host-probe", "probe")
    try:
        probe.subscribe(*topics)
        probe.subscribe("kiosk/v1/_host/none")
        return {t: p for t, p, retained in probe.messages if retained and p}
    finally:
        probe.close()


# -- the table ---------------------------------------------------------------------------------

Act = Callable[[Rig, Client], None]  # what the kiosk does, on a client of its own account
Check = Callable[[Rig, Client, Client], None]  # (rig, that client, the watcher)


@dataclass(frozen=True)
class Attempt:
    what: str
    act: Act
    outcome: str  # "refused", "not delivered", "not retained", "retained", "nobody cut off"
    check: Check


def _publish(t: str, payload: bytes, retain: bool = False) -> Act:
    def act(rig: Rig, mallory: Client) -> None:
        mallory.publish(t, payload, retain)

    return act


def _not_seen(t: str, payload: bytes) -> Check:
    """The watcher, which reads everything, never got `payload` on `t`: the kiosk's own
    telemetry, sent after it on the same connection, arrives after it would have."""

    def check(rig: Rig, mallory: Client, watcher: Client) -> None:
        end = example("telemetry", up_ms=424242)
        mallory.publish(topic("telemetry"), end)
        wait_until(lambda: end in watcher.on(topic("telemetry")), 10, "the kiosk's own telemetry")
        assert payload not in watcher.on(t)

    return check


def _subscribe(*filters: str) -> Act:
    def act(rig: Rig, mallory: Client) -> None:
        mallory.subscribe(*filters)

    return act


def _nothing_delivered(rig: Rig, mallory: Client, watcher: Client) -> None:
    """The host's side sends the victim a command and a config, the other store its cases,
    then the kiosk its own command: once that is in, the others would have been too."""
    host = rig.client("kiosk-host-probe", "host-sender")  # not the watcher's: one at a time
    try:
        host.publish(topic("cmd", VICTIM), b'{"theirs":1}')
        host.publish(topic("config", VICTIM), b'{"theirs":2}', retain=True)
        host.publish(f"kiosk/v1/{OTHER_STORE}/cases", b'{"theirs":3}', retain=True)
        host.publish(topic("cmd"), b'{"mine":4}')
    finally:
        host.close()
    wait_until(lambda: b'{"mine":4}' in mallory.on(topic("cmd")), 10, "its own command")
    own = f"kiosk/v1/{STORE}/{MALLORY}/"
    assert {t for t in mallory.topics() if not t.startswith(own)} <= {f"kiosk/v1/{STORE}/cases"}


def _takeover(client_id: str, clean: bool) -> Act:
    def act(rig: Rig, mallory: Client) -> None:
        rogue = rig.client(MALLORY, client_id, clean=clean)
        try:
            assert rogue.refused is None
            rogue.subscribe(topic("cmd"))  # a round trip on the connection: it is in
        finally:
            rogue.close()

    return act


def _nobody_cut_off(rig: Rig, mallory: Client, watcher: Client) -> None:
    # only the kiosk's own earlier connection may be closed for it; the aggregator, the other
    # kiosk and the fleet tool are checked after every row
    assert set(rig.takeovers()) <= {f"{STORE}/{MALLORY}"}, rig.takeovers()


def _not_retained(channel: str) -> Check:
    def check(rig: Rig, mallory: Client, watcher: Client) -> None:
        t = topic(channel)
        # the aggregator has taken it in (stored, or its figures), as any other message
        if channel == "event":
            wait_until(lambda: 9001 in rig.stored(MALLORY), 20, "the event stored")
        else:
            wait_until(
                lambda: (device(rig.db, STORE, MALLORY).get("telemetry") or {}).get("up_ms")
                == 777777, 20, "the telemetry taken in",
            )  # fmt: skip
        # and a new subscriber is not handed it
        wait_until(lambda: t not in retained_now(rig, t), 10, f"{t} to be cleared")
        # the dead letters keep it on record, with why
        wait_until(lambda: [d.rule for d in rig.dead(t)] == ["retained"], 10, "the dead letter")
        assert "the broker's copy was cleared" in rig.dead(t)[0].reason

    return check


def _retained(rig: Rig, mallory: Client, watcher: Client) -> None:
    assert topic("status") in retained_now(rig, topic("status"))


FORGED = (
    (topic("event", VICTIM), False), (topic("status", VICTIM), True),
    (topic("telemetry", VICTIM), False), (topic("event", MALLORY, OTHER_STORE), False),
    (topic("cmd", VICTIM), False), (topic("config", VICTIM), True),
    (topic("cmd"), False), (topic("config"), True),
    (f"kiosk/v1/{STORE}/cases", True), (f"kiosk/v1/{STORE}/summary", True),
    (f"kiosk/v1/{STORE}/alerts", False), (f"kiosk/v1/{STORE}/recognition", True),
    ("kiosk/v1/_host/status", True),
)  # fmt: skip

ATTEMPTS = [
    *(
        Attempt(
            f"client id {cid}, {'clean' if clean else 'persistent'} session",
            _takeover(cid, clean),
            "nobody cut off",
            _nobody_cut_off,
        )
        for cid in KNOWN_IDS
        for clean in (True, False)
    ),
    Attempt(
        "retained event on its own topic",
        _publish(topic("event"), event(MALLORY, 9001), True),
        "not retained",
        _not_retained("event"),
    ),
    Attempt(
        "retained telemetry on its own topic",
        _publish(topic("telemetry"), example("telemetry", up_ms=777777), True),
        "not retained",
        _not_retained("telemetry"),
    ),
    Attempt(
        "retained status on its own topic, which the contract retains",
        _publish(topic("status"), example("status"), True),
        "retained",
        _retained,
    ),
    *(
        Attempt(
            f"publish on {t}{' retained' if retain else ''}",
            _publish(t, b'{"forged":"%s"}' % t.encode(), retain),
            "refused",
            _not_seen(t, b'{"forged":"%s"}' % t.encode()),
        )
        for t, retain in FORGED
    ),
    Attempt(
        "read another kiosk's command and config, another store's cases, wildcards",
        _subscribe(
            topic("cmd", VICTIM),
            topic("config", VICTIM),
            f"kiosk/v1/{STORE}/+/cmd",
            f"kiosk/v1/{OTHER_STORE}/cases",
            "kiosk/#",
            "#",
            topic("cmd"),
        ),
        "not delivered",
        _nothing_delivered,
    ),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a.what for a in ATTEMPTS])
def test_every_attempt_of_a_kiosk_account_has_its_expected_outcome(
    rig: Rig, running: Client, attempt: Attempt
) -> None:
    victim = rig.client(VICTIM, f"{STORE}/{VICTIM}", clean=False)
    fleet = rig.client("kiosk-fleet", "fleet-tool")
    mallory = rig.client(MALLORY, f"{STORE}/{MALLORY}", clean=False)
    connected = rig.connections("kiosk-host")
    rig.mark_now()
    try:
        attempt.act(rig, mallory)
        attempt.check(rig, mallory, running)
        # whatever it was, nobody else was cut off: the aggregator, the kiosk, the tool
        assert (victim.cut_off, fleet.cut_off, running.cut_off) == (0, 0, 0), attempt.what
        assert victim.connected() and fleet.connected() and running.connected()
        assert rig.connections("kiosk-host") == connected  # the aggregator did not reconnect
        assert rig.serve is not None and rig.serve.proc.poll() is None
    finally:
        for c in (mallory, fleet, victim):
            c.close()


# -- the stream --------------------------------------------------------------------------------


def test_no_client_id_or_session_flag_costs_the_aggregator_an_event(
    rig: Rig, running: Client
) -> None:
    """The victim kiosk streams events; the hostile account tries every client id it could
    know, clean and persistent, first with the aggregator down (its session holds the stream),
    then with it running. Every event the broker acknowledged is stored, once."""
    first = max(rig.stored(VICTIM), default=0) + 1
    rig.mark_now()
    victim = rig.client(VICTIM, f"{STORE}/{VICTIM}", clean=False)
    acked: list[int] = []
    seq = first

    def stream(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            victim.publish(topic("event", VICTIM), event(VICTIM, seq))  # returns at the PUBACK
            acked.append(seq)
            seq += 1

    try:
        # the aggregator down: the broker holds the stream in the aggregator's session
        rig.stop_serve()
        stream(20)
        for cid in KNOWN_IDS:
            for clean in (True, False):
                _takeover(cid, clean)(rig, victim)
                stream(5)
        rig.start_serve()
        wait_until(lambda: set(acked) <= set(rig.stored(VICTIM)), 30, "the held events stored")
        # the aggregator running: the same again
        connected = rig.connections("kiosk-host")
        for cid in KNOWN_IDS:
            for clean in (True, False):
                _takeover(cid, clean)(rig, victim)
                stream(5)
        wait_until(lambda: set(acked) <= set(rig.stored(VICTIM)), 30, "every event stored")
        stored = [s for s in rig.stored(VICTIM) if s >= first]
        assert stored == acked  # each acknowledged event stored, once
        assert victim.cut_off == 0 and victim.connected()  # the honest kiosk stayed on
        assert rig.connections("kiosk-host") == connected  # the aggregator was never cut off
        assert set(rig.takeovers()) <= {f"{STORE}/{MALLORY}"}, rig.takeovers()
    finally:
        victim.close()


# -- the aggregator's and the tools' own accounts ------------------------------------------------


def test_serve_takes_its_accounts_name_as_client_id_and_refuses_another(
    rig: Rig, tmp_path: Path
) -> None:
    url = aggregator_url(rig.broker_dir, rig.broker.url)
    db = str(tmp_path / "other.db")
    done = kiosk_host("serve", "--broker", url, "--db", db, "--client-id", "agg-x")
    assert done.returncode == 2
    assert done.stderr.startswith("kiosk-host: --client-id agg-x: the broker names each client ")
    assert url.split(":")[2].split("@")[0] not in done.stderr  # no password shown


def test_fleet_tools_refuse_the_aggregators_account_and_work_on_their_own(
    rig: Rig, running: Client
) -> None:
    connected = rig.connections("kiosk-host")
    accounts = ("aggregator.json", "aggregator-watch.json")
    for account in (account_url(rig.broker_dir, rig.broker.url, a) for a in accounts):
        refused = kiosk_host("identify", VICTIM, "--store", STORE, "--broker", account)
        assert refused.returncode == 2, refused.stderr
        assert "an aggregator's account" in refused.stderr and "kiosk-fleet" in refused.stderr
    sent = kiosk_host("identify", VICTIM, "--store", STORE, "--broker",
                      fleet_url(rig.broker_dir, rig.broker.url))  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: bool(running.on(topic("cmd", VICTIM))), 10, "the command")
    assert rig.connections("kiosk-host") == connected  # the aggregator was not touched


def test_the_shipped_broker_settings_bind_client_ids_to_accounts_on_every_listener() -> None:
    """use_username_as_clientid is a listener's option: it stands under each listener line of
    the shipped file (the TLS one too), and the test broker keeps the file line for line."""
    lines = SHIPPED_CONF.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.lstrip("#").startswith("listener "):
            block = []
            for following in lines[i + 1 :]:
                if following.lstrip("#").startswith("listener "):
                    break
                block.append(following.lstrip("#"))
            assert "use_username_as_clientid true" in block, line
    made = broker_config(18830, Path("/x"), auth=True).splitlines()
    placed = ("listener ", "persistence_location ", "log_dest ", "password_file ", "acl_file ")
    kept = [m for m in made if m != "user root"]
    assert len(kept) == len(lines)
    for shipped, test in zip(lines, kept, strict=True):
        assert test == shipped or shipped.startswith(placed), (shipped, test)


def test_two_fleet_tools_on_one_account_the_first_fails_and_does_not_fight_back(
    rig: Rig, running: Client
) -> None:
    """One connection per account: a second tool on the fleet account cuts the first off. The
    first says so when it next uses the connection, and does not reconnect (which would cut
    the second off in turn); the second finishes its work."""
    url = fleet_url(rig.broker_dir, rig.broker.url)
    rig.mark_now()
    first = Broker(url)
    try:
        second = Broker(url)
        try:
            wait_until(lambda: not first.client.is_connected(), 10, "the first cut off")
            with pytest.raises(FleetError, match="another client logged in with the same account"):
                first.publish(topic("cmd", VICTIM), b'{"from":"first"}')
            second.publish(topic("cmd", VICTIM), b'{"from":"second"}')
            wait_until(lambda: b'{"from":"second"}' in running.on(topic("cmd", VICTIM)), 10, "it")
            assert second.client.is_connected()
            assert b'{"from":"first"}' not in running.on(topic("cmd", VICTIM))
            assert rig.takeovers() == ["kiosk-fleet"]  # once: nobody fought back
        finally:
            second.close()
    finally:
        first.close()
