"""Per-device security on a real mosquitto run from the files `kiosk-host provision` wrote.

Nobody gets in without an account; a kiosk reaches only its own topics and its store's cases;
the aggregator sees everything; TLS works for the firmware (as a virtual kiosk) and for the
aggregator with the CA given, and a kiosk that trusts another CA never connects; a payload
that names another kiosk than its topic is dead-lettered by the host even when the broker
let it through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiosk_host.storage.sqlite import Storage
from tests.broker import Mosquitto
from tests.fleet_rig import (
    Client,
    Serve,
    aggregator_url,
    broker_with,
    device,
    fleet_url,
    host_account,
    identity,
    kiosk_host,
    make_ca,
    make_server_cert,
    provision,
)
from tests.virtual_kiosks import VirtualKiosk, wait_until

STORE = "store-12"


@dataclass
class Fleet:
    broker: Mosquitto
    broker_dir: Path
    kiosks: dict[str, Path]  # device -> its provisioned folder (plain MQTT)
    tls_kiosk: Path  # store-12/till-9, provisioned for the TLS listener
    wrong_ca_kiosk: Path  # store-12/till-8, for the TLS listener but trusting another CA
    ca: Path
    wrong_ca: Path
    password: str  # the aggregator's
    watch: tuple[str, str]  # another aggregator's account, for watching beside a running serve

    def client(self, name: str, client_id: str, tls: bool = False) -> Client:
        """A paho client with a provisioned kiosk's account, the aggregator's (`kiosk-host`:
        never while a `serve` runs on it, which it would cut off) or the watcher's (`watch`)."""
        if name == "kiosk-host":
            user, password = name, self.password
        elif name == "watch":
            user, password = self.watch
        else:
            ident = identity(self.kiosks[name])
            user, password = ident["user"], ident["password"]
        port = self.broker.tls_port if tls else self.broker.port
        assert port is not None
        return Client(port, client_id, user, password, self.ca if tls else None)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("security")
    ca = make_ca(tmp / "pki", "shop-ca")
    wrong = make_ca(tmp / "other-pki", "someone-elses-ca")
    broker_dir = tmp / "broker"
    broker = broker_with(tmp / "mosquitto", broker_dir, make_server_cert(tmp / "pki", ca))
    kiosks = {}
    for store, name in ((STORE, "till-1"), (STORE, "till-2"), ("store-34", "till-1")):
        out = tmp / "devices" / store / name
        provision(broker_dir, out, store, name, broker.url)
        kiosks[name if store == STORE else f"{store}/{name}"] = out
    tls_kiosk, wrong_kiosk = tmp / "devices" / STORE / "till-9", tmp / "devices" / STORE / "till-8"
    provision(broker_dir, tls_kiosk, STORE, "till-9", broker.tls_url, "--ca", str(ca[0]))
    provision(broker_dir, wrong_kiosk, STORE, "till-8", broker.tls_url, "--ca", str(wrong[0]))
    password = json.loads((broker_dir / "aggregator.json").read_text())["password"]
    watch = host_account(broker_dir, "watch")
    broker.start()
    try:
        yield Fleet(
            broker, broker_dir, kiosks, tls_kiosk, wrong_kiosk, ca[0], wrong[0], password, watch
        )
    finally:
        broker.close()


def seqs(db: Path, name: str) -> list[int]:
    """The event numbers of a kiosk of the store that the aggregator stored."""
    storage = Storage.open(str(db))
    try:
        return storage.seqs(STORE, name)
    finally:
        storage.close()


def aggregator_online(watcher: Client, client_id: str) -> bool:
    """The aggregator said it is online: it subscribed before, on the same connection."""
    said = [json.loads(p) for p in watcher.on("kiosk/v1/_host/status")]
    return any(s.get("state") == "online" and s.get("host") == client_id for s in said)


def virtual_kiosk(fleet: Fleet, folder: Path, state: Path) -> VirtualKiosk:
    """The firmware as the kiosk provisioned in `folder`."""
    ident = identity(folder)
    return VirtualKiosk(fleet.broker.url, state, ident["store"], ident["device"],
                        extra=["--identity", str(folder)])  # fmt: skip


def test_nobody_gets_in_without_an_account(fleet: Fleet) -> None:
    port, tls_port = fleet.broker.port, fleet.broker.tls_port
    assert tls_port is not None
    ident = identity(fleet.kiosks["till-1"])
    attempts = {
        "anonymous": Client(port, "anon"),
        "anonymous over TLS": Client(tls_port, "anon-tls", ca=fleet.ca),
        "a wrong password": Client(port, "guess", ident["user"], "guessed-password"),
        "another kiosk's password": Client(
            port, "swap", ident["user"], identity(fleet.kiosks["till-2"])["password"]
        ),
        "an unknown user": Client(port, "ghost", "store-12/till-77", ident["password"]),
    }
    for what, client in attempts.items():
        client.close()
        assert client.refused == "Not authorized", what
    kiosk = fleet.client("till-1", "the-real-till-1")
    kiosk.close()
    assert kiosk.refused is None


def test_a_kiosk_cannot_publish_on_another_kiosks_topics(
    fleet: Fleet, closing: Callable[[Any], Any]
) -> None:
    host = closing(fleet.client("kiosk-host", "host-pub"))
    assert host.subscribe("kiosk/#") == [1]
    a = closing(fleet.client("till-1", "a-pub"))
    forged = b'{"v":1,"state":"offline"}'
    for topic in ("till-2/event", "till-2/status", "till-2/telemetry", "till-2/cmd",
                  "till-2/config", "till-1/cmd", "till-1/config"):  # fmt: skip
        a.publish(f"kiosk/v1/{STORE}/{topic}", forged)
    a.publish("kiosk/v1/store-34/till-1/status", forged, retain=True)
    a.publish(f"kiosk/v1/{STORE}/cases", b'{"v":1,"cases":[]}', retain=True)
    a.publish("kiosk/v1/_host/status", forged, retain=True)
    a.publish(f"kiosk/v1/{STORE}/till-1/telemetry", b"mine")  # after the others, on one link
    wait_until(lambda: host.on(f"kiosk/v1/{STORE}/till-1/telemetry") == [b"mine"], 10, "mine")
    live = [t for t, _, retained in host.messages if not retained]
    assert live == [f"kiosk/v1/{STORE}/till-1/telemetry"]  # nothing forged got in


def test_a_kiosk_reads_only_its_own_config_and_commands_and_its_stores_cases(
    fleet: Fleet, closing: Callable[[Any], Any]
) -> None:
    host = closing(fleet.client("kiosk-host", "host-read"))
    a = closing(fleet.client("till-1", "a-read"))
    # Whatever it asks for, wildcards included, it gets only what the ACL gives it.
    a.subscribe(f"kiosk/v1/{STORE}/till-2/cmd", f"kiosk/v1/{STORE}/till-2/config",
                f"kiosk/v1/{STORE}/+/cmd", f"kiosk/v1/{STORE}/#", "kiosk/v1/store-34/cases",
                "kiosk/#", "#")  # fmt: skip
    host.publish(f"kiosk/v1/{STORE}/till-2/config", b'{"theirs":1}', retain=True)
    host.publish("kiosk/v1/store-34/cases", b'{"theirs":2}', retain=True)
    host.publish(f"kiosk/v1/{STORE}/till-2/cmd", b'{"theirs":3}')
    host.publish(f"kiosk/v1/{STORE}/summary", b'{"managers":4}', retain=True)
    host.publish(f"kiosk/v1/{STORE}/cases", b'{"ours":5}', retain=True)
    host.publish(f"kiosk/v1/{STORE}/till-1/cmd", b'{"mine":6}')
    wait_until(lambda: len(a.on(f"kiosk/v1/{STORE}/till-1/cmd")) >= 1, 10, "its own command")
    assert {t for t in a.topics()} == {f"kiosk/v1/{STORE}/cases", f"kiosk/v1/{STORE}/till-1/cmd"}
    b = closing(fleet.client("store-34/till-1", "b-read"))
    b.subscribe(f"kiosk/v1/{STORE}/cases", "kiosk/v1/store-34/cases")
    wait_until(lambda: len(b.on("kiosk/v1/store-34/cases")) == 1, 10, "its own store's cases")
    assert b.topics() == ["kiosk/v1/store-34/cases"]  # not store-12's, retained before it


def test_the_aggregator_sees_everything_and_only_it_reaches_a_kiosk(
    fleet: Fleet, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    host = closing(fleet.client("kiosk-host", "host-all"))
    assert host.subscribe("kiosk/#", "$SYS/#") == [1, 1]
    b = closing(virtual_kiosk(fleet, fleet.kiosks["till-2"], tmp_path / "till-2"))
    b.wait_screen("idle")
    wait_until(lambda: bool(host.on(f"kiosk/v1/{STORE}/till-2/status")), 15, "till-2 online")
    wait_until(lambda: bool(host.on(f"kiosk/v1/{STORE}/till-2/telemetry")), 15, "its telemetry")
    a = closing(fleet.client("till-1", "a-forger"))
    forged = {
        "v": 1, "cmd": "confirm_recovery", "id": "forged-1", "ts": 1763900000, "case": "B7K3C"
    }  # fmt: skip
    a.publish(f"kiosk/v1/{STORE}/till-2/cmd", json.dumps(forged))
    a.publish(f"kiosk/v1/{STORE}/till-1/event", b"after the forgery")
    wait_until(lambda: bool(host.on(f"kiosk/v1/{STORE}/till-1/event")), 10, "a's own event")
    sent = kiosk_host("identify", "till-2", "--store", STORE, "--seconds", "1", "--broker",
                      fleet_url(fleet.broker_dir, fleet.broker.url))  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    b.wait_screen("identify", text="till-2")
    assert b.count("confirm") == 0  # the forged command never reached it


def test_tls_for_the_firmware_and_the_aggregator(
    fleet: Fleet, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    db = tmp_path / "kiosk.db"
    tls_url = aggregator_url(fleet.broker_dir, fleet.broker.tls_url)
    serve = closing(Serve(tls_url, db, "--ca", str(fleet.ca)))
    kiosk = closing(virtual_kiosk(fleet, fleet.tls_kiosk, tmp_path / "till-9"))
    kiosk.wait_screen("idle")
    wait_until(lambda: device(db, STORE, "till-9").get("state") == "online", 30, "till-9 online")
    kiosk.send("press 4")
    wait_until(lambda: seqs(db, "till-9") == [1], 20, "its event, stored by the aggregator")
    said = serve.stop()
    assert fleet.password not in said  # the log names the broker, not its password
    assert f"mqtts://127.0.0.1:{fleet.broker.tls_port}" in said
    log = fleet.broker.log
    assert re.search(rf"connected from 127.0.0.1:\d+ as {STORE}/till-9 .*u'{STORE}/till-9'", log)


def test_a_kiosk_that_trusts_another_ca_never_connects(
    fleet: Fleet, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    host = closing(fleet.client("kiosk-host", "host-ca"))
    host.subscribe(f"kiosk/v1/{STORE}/till-8/#")
    refused = "Client <unknown> disconnected: Protocol error."  # a TLS handshake given up
    before = fleet.broker.log.count(refused)
    kiosk = closing(virtual_kiosk(fleet, fleet.wrong_ca_kiosk, tmp_path / "till-8"))
    kiosk.wait_screen("idle")  # it works for its customers all the same
    kiosk.send("press 4")
    kiosk.wait_screen("thanks")
    # it tries, is refused at the handshake, and tries again later
    wait_until(lambda: fleet.broker.log.count(refused) >= before + 2, 30, "two tries")
    assert host.topics() == []
    assert f"as {STORE}/till-8" not in fleet.broker.log
    # the aggregator's tools with the wrong CA are refused as well, and say why
    url = fleet_url(fleet.broker_dir, fleet.broker.tls_url)
    wrong = kiosk_host("reboot", "till-1", "--store", STORE, "--ca", str(fleet.wrong_ca),
                       "--broker", url)  # fmt: skip
    assert wrong.returncode == 2
    assert "certificate verify failed" in wrong.stderr
    assert url.split(":")[2].split("@")[0] not in wrong.stderr  # the fleet account's password


def test_a_payload_naming_another_kiosk_is_dead_lettered_by_the_host(
    fleet: Fleet, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    db = tmp_path / "kiosk.db"
    host = closing(fleet.client("watch", "host-watch"))
    host.subscribe("kiosk/v1/_host/status")
    closing(Serve(aggregator_url(fleet.broker_dir, fleet.broker.url), db))
    wait_until(lambda: aggregator_online(host, "kiosk-host"), 30, "the aggregator subscribed")
    a = closing(fleet.client("till-1", "a-impostor"))
    event = {"v": 1, "kind": "rating", "store": STORE, "device": "till-2", "seq": 1, "ts": None,
             "up_ms": 1000, "score": 1, "scale": 4, "station": "till-2", "staff": None}  # fmt: skip
    a.publish(f"kiosk/v1/{STORE}/till-1/event", json.dumps(event))  # its own topic: let through
    a.publish(f"kiosk/v1/{STORE}/till-1/event", json.dumps({**event, "device": "till-1"}))

    def dead() -> list[dict[str, Any]]:
        out = kiosk_host("deadletter", "--db", str(db), "--json")
        assert out.returncode == 0, out.stderr
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        # (the retained junk earlier tests left on the broker is dead-lettered too)
        return [r for r in rows if r["topic"] == f"kiosk/v1/{STORE}/till-1/event"]

    wait_until(lambda: len(dead()) == 1, 20, "the dead letter")
    (letter,) = dead()
    assert (letter["topic"], letter["rule"], letter["field"]) == (
        f"kiosk/v1/{STORE}/till-1/event", "identity", "/device"
    )  # fmt: skip
    assert "'till-2' differs from 'till-1' in the topic" in letter["reason"]
    wait_until(lambda: seqs(db, "till-1") == [1], 20, "the honest one")
    assert seqs(db, "till-2") == []
