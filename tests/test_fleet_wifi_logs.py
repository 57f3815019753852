"""`kiosk-host wifi` and `kiosk-host logs` end to end: a provisioned virtual kiosk on a
mosquitto run with the shipped settings and the accounts provisioning wrote, and a serial
kiosk (MicroPython's VM behind a pseudo-terminal) for the change over USB."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kiosk_host import __version__
from kiosk_host.sim.serial_kiosk import SerialKiosk
from tests.broker import Mosquitto
from tests.fleet_rig import WIFI, broker_with, fleet_url, identity, provision
from tests.virtual_kiosks import KIOSK_HOST, VirtualKiosk

pytestmark = pytest.mark.e2e  # separate processes end to end: make test runs these

STORE = "shop-7"
NEW_SSID, NEW_KEY = "shop-floor-2", "the-new-shop-key"


def cli(
    *args: str, key: str | None = None, timeout: float = 200
) -> subprocess.CompletedProcess[str]:
    """`kiosk-host ARGS` as a person types it; the Wi-Fi key, if any, in its environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("KIOSK_WIFI_PASSWORD", "KIOSK_BROKER")}
    if key is not None:
        env["KIOSK_WIFI_PASSWORD"] = key
    return subprocess.run(
        [str(KIOSK_HOST), *args], capture_output=True, text=True, timeout=timeout, check=False,
        env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@dataclass
class Shop:
    broker: Mosquitto
    url: str  # the fleet tools' account
    devices_dir: Path
    state: Path  # the virtual kiosk's flash
    kiosk: VirtualKiosk  # shop-7/till-1, as provisioned; shop-7/till-2 is provisioned only

    def folder(self, device: str = "till-1") -> Path:
        return self.devices_dir / STORE / device

    def wifi(self, *args: str, key: str | None = NEW_KEY) -> subprocess.CompletedProcess[str]:
        return cli("wifi", "--store", STORE, "--device", "till-1", "--broker", self.url,
                   "--devices-dir", str(self.devices_dir), *args, key=key)  # fmt: skip

    def logs(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli("logs", "--store", STORE, "--broker", self.url, *args)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    broker_dir, devices_dir = tmp_path / "broker", tmp_path / "devices"
    broker = broker_with(tmp_path / "mosquitto", broker_dir)
    for name in ("till-1", "till-2"):
        provision(broker_dir, devices_dir / STORE / name, STORE, name, broker.url)
    with contextlib.ExitStack() as stack:
        broker.start()
        stack.callback(broker.close)
        kiosk = VirtualKiosk(broker.url, tmp_path / "state", STORE, "till-1",
                             extra=["--identity", str(devices_dir / STORE / "till-1")])  # fmt: skip
        stack.callback(kiosk.kill)
        kiosk.wait_screen("idle")
        yield Shop(broker, fleet_url(broker_dir, broker.url), devices_dir, tmp_path / "state",
                   kiosk)  # fmt: skip


# -- logs ------------------------------------------------------------------------------------


def test_logs_prints_the_kiosks_recent_lines_with_its_uptime(shop: Shop) -> None:
    done = shop.logs("--device", "till-1", "--json")
    assert done.returncode == 0, done.stderr
    log = json.loads(done.stdout)["log"]
    assert (log["store"], log["device"], log["lost"]) == (STORE, "till-1", 0)
    texts = [line["text"] for line in log["lines"]]
    assert texts[0] == f"boot: virtual kiosk, firmware {__version__}"
    assert texts[1:] == ["link: connected"]
    assert all(line["up_ms"] <= log["up_ms"] for line in log["lines"])

    text = shop.logs("--device", "till-1")
    assert text.returncode == 0, text.stderr
    first, *lines = text.stdout.splitlines()
    assert first.startswith(f"{STORE}/till-1: up 00:00:") and " lines" in first
    assert lines[0].startswith("  up 00:00:00.000 (") and lines[0].endswith(
        f" ago)  boot: virtual kiosk, firmware {__version__}"
    )
    assert any(line.endswith("  link: connected") for line in lines)


def test_logs_of_a_kiosk_that_does_not_answer_says_so_and_exits_1(shop: Shop) -> None:
    done = shop.logs("--device", "till-2", "--wait", "2")  # provisioned, never connected
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith(
        f"{STORE}/till-2 did not send its log in time (it is not known to the broker)"
    )
    bad = shop.logs("--device", "Till 2")
    assert bad.returncode == 2 and "is not an identifier" in bad.stderr


# -- wifi over MQTT ----------------------------------------------------------------------------


def test_wifi_over_mqtt_moves_the_kiosk_and_the_provisioned_folder_follows(shop: Shop) -> None:
    before = identity(shop.folder())
    shop.kiosk.send(f"net add {NEW_SSID} {NEW_KEY}")
    done = shop.wifi("--ssid", NEW_SSID, "--insecure")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"{STORE}/till-1 joined {NEW_SSID} and reached the broker over it: it keeps it",
        f"updated {shop.folder() / 'identity.json'}, so that a later deployment keeps it",
    ]
    assert NEW_KEY not in done.stdout + done.stderr
    after = identity(shop.folder())
    assert after == {**before, "ssid": NEW_SSID, "key": NEW_KEY}  # its identity otherwise kept
    assert json.loads((shop.state / "wifi.json").read_text()) == {"ssid": NEW_SSID, "key": NEW_KEY}
    # and it is still there to ask: online over the new network
    logs = shop.logs("--device", "till-1", "--json")
    texts = [line["text"] for line in json.loads(logs.stdout)["log"]["lines"]]
    assert f"wifi: trying {NEW_SSID}" in texts and f"wifi: joined {NEW_SSID}, kept" in texts


def test_wifi_over_plain_mqtt_is_refused_unless_told_insecure(shop: Shop) -> None:
    done = shop.wifi("--ssid", NEW_SSID)
    assert done.returncode == 2
    assert "--broker is plain mqtt://: the Wi-Fi key would cross the network unencrypted" in (
        done.stderr
    )
    assert "--insecure" in done.stderr and NEW_KEY not in done.stderr
    tls = shop.wifi("--ssid", NEW_SSID, "--broker", shop.url.replace("mqtt://", "mqtts://"))
    assert tls.returncode == 2  # TLS to the broker, but the kiosk itself is on plain MQTT
    assert f"{STORE}/till-1 talks to its broker over plain MQTT" in tls.stderr
    short = shop.wifi("--ssid", NEW_SSID, "--insecure", key="short")
    assert short.returncode == 2 and "the key must be 8 to 63 characters" in short.stderr
    none = shop.wifi("--ssid", NEW_SSID, "--insecure", key=None)
    assert none.returncode == 2
    assert f"no key for {NEW_SSID}: give --wifi-password-file FILE or $KIOSK_WIFI_PASSWORD" in (
        none.stderr
    )
    assert identity(shop.folder())["ssid"] == WIFI[0]  # nothing changed


@pytest.mark.slow  # the kiosk gives the new network its whole minute
def test_wifi_the_kiosk_cannot_join_is_given_up_and_nothing_changes(shop: Shop) -> None:
    before = identity(shop.folder())
    done = shop.wifi("--ssid", "nowhere", "--insecure")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.strip() == (
        f"{STORE}/till-1 did not keep nowhere: Wi-Fi: no connection to nowhere; it is back on "
        "its old Wi-Fi and nothing was changed here"
    )
    assert identity(shop.folder()) == before
    assert not (shop.state / "wifi.json").exists()
    logs = shop.logs("--device", "till-1", "--json")  # back online on the old network
    assert logs.returncode == 0, logs.stderr
    texts = [line["text"] for line in json.loads(logs.stdout)["log"]["lines"]]
    assert f"wifi: back to {WIFI[0]}: Wi-Fi: no connection to nowhere" in texts


# -- wifi over USB -----------------------------------------------------------------------------


@pytest.fixture
def on_usb(tmp_path: Path) -> Iterator[tuple[SerialKiosk, Path, Path]]:
    """A serial kiosk whose flash holds the identity a deployment put there (the build's
    firmware version in it), and the folder it was provisioned in."""
    devices_dir = tmp_path / "devices"
    provision(tmp_path / "broker", devices_dir / STORE / "till-1", STORE, "till-1",
              "mqtt://127.0.0.1:1883")  # fmt: skip
    flash = tmp_path / "flash"
    flash.mkdir()
    deployed: dict[str, Any] = {**identity(devices_dir / STORE / "till-1"), "fw": "9.9.9+b1"}
    (flash / "identity.json").write_text(json.dumps(deployed))
    with SerialKiosk(flash) as kiosk:
        yield kiosk, flash, devices_dir


def test_wifi_over_usb_rewrites_only_the_wifi_of_the_kiosk_and_restarts_it(
    on_usb: tuple[SerialKiosk, Path, Path],
) -> None:
    kiosk, flash, devices_dir = on_usb
    deployed = json.loads((flash / "identity.json").read_text())
    provisioned = identity(devices_dir / STORE / "till-1")
    mark = kiosk.mark()
    done = cli("wifi", "--port", kiosk.port, "--ssid", NEW_SSID, "--devices-dir",
               str(devices_dir), key=NEW_KEY)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"{STORE}/till-1: Wi-Fi {NEW_SSID} (was {WIFI[0]}) written into /identity.json on "
        f"{kiosk.port}, whole; the kiosk restarted on it (if it cannot join, run this again "
        "with the right name and key)",
        f"updated {devices_dir / STORE / 'till-1' / 'identity.json'}, so that a later "
        "deployment keeps it",
    ]
    assert NEW_KEY not in done.stdout + done.stderr
    # on the kiosk: its own identity (its firmware version too), with the new Wi-Fi
    assert json.loads((flash / "identity.json").read_text()) == {
        **deployed,
        "ssid": NEW_SSID,
        "key": NEW_KEY,
    }
    assert not (flash / "identity.json.new").exists()
    assert identity(devices_dir / STORE / "till-1") == {
        **provisioned,
        "ssid": NEW_SSID,
        "key": NEW_KEY,
    }
    kiosk.wait_line(lambda line: line.startswith("RESET"), 30, after=mark)


def test_wifi_over_usb_refuses_what_it_cannot_do_and_changes_nothing(
    on_usb: tuple[SerialKiosk, Path, Path], tmp_path: Path
) -> None:
    kiosk, flash, _ = on_usb
    before = (flash / "identity.json").read_text()
    long = cli("wifi", "--port", kiosk.port, "--ssid", "s" * 33, key=NEW_KEY)
    assert long.returncode == 2 and "--ssid must be the network's name, 1 to 32 bytes" in (
        long.stderr
    )
    gone = cli("wifi", "--port", "/dev/ttyUSB-not-there", "--ssid", NEW_SSID, key=NEW_KEY)
    assert gone.returncode == 2 and "there is no serial port /dev/ttyUSB-not-there" in gone.stderr
    both = cli("wifi", "--port", kiosk.port, "--store", STORE, "--ssid", NEW_SSID, key=NEW_KEY)
    assert both.returncode == 2 and "leave out --store, --device and --broker" in both.stderr
    keyfile = tmp_path / "key.txt"
    keyfile.write_text("")
    empty = cli("wifi", "--port", kiosk.port, "--ssid", NEW_SSID, "--wifi-password-file",
                str(keyfile))  # fmt: skip
    assert empty.returncode == 2 and "its first line is empty" in empty.stderr
    assert (flash / "identity.json").read_text() == before
    (flash / "identity.json").unlink()
    bare = cli("wifi", "--port", kiosk.port, "--ssid", NEW_SSID, key=NEW_KEY)
    assert bare.returncode == 2
    assert f"the kiosk on {kiosk.port} has no readable /identity.json" in bare.stderr
